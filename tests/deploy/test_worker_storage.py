"""The stream processor runs with a read-only root filesystem: whatever Faust writes must land on
a writable volume. Faust's data directory is relative to the working directory."""

from __future__ import annotations

from pathlib import Path

import faust

from services.counters.settings import CountersSettings
from tools.deploycheck import manifests


def test_faust_data_directory_is_on_a_writable_volume(built: dict[str, list[dict]]) -> None:
    group = CountersSettings().worker_consumer_group
    datadir = Path(str(faust.App(group, store="memory://", autodiscover=False).conf.datadir))
    assert not datadir.is_absolute(), "Faust writes relative to the working directory"
    for objects in built.values():
        worker = next(
            o
            for o in objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == "stream-processor"
        )
        spec = manifests.pod_spec(worker)
        container = spec["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        workdir = container["workingDir"]
        assert workdir in mounts, "the working directory must be a mounted volume"
        assert "emptyDir" in volumes[mounts[workdir]]
        assert "/tmp" in mounts
