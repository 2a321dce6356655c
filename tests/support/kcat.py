"""Producing raw records with kcat (Debian package ``kcat``), for poison-record tests: no
socialproof code on the producing side.

Debian bookworm's kcat links librdkafka 2.0.2, which cannot parse the ApiVersions v3 response of
the embedded broker (Tansu adds tagged fields; librdkafka reports "Read underflow" and gives up).
Against Apache Kafka the system library works. When it fails that way, the same kcat binary is
run again with the newer librdkafka bundled in the confluent-kafka wheel (loaded through
LD_LIBRARY_PATH): a broker-quirk workaround that lives in the test helpers, never in services.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import confluent_kafka

QUIRK = "ApiVersionRequest failed"


def _bundled_librdkafka_dir() -> str:
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    assert found, f"no bundled librdkafka in {libs}"
    shim = Path(tempfile.gettempdir()) / f"socialproof-kcat-lib-{os.getuid()}"
    shim.mkdir(exist_ok=True)
    link = shim / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(found[0])
    return str(shim)


def produce(bootstrap: str, topic: str, key: str, value_file: Path) -> None:
    """One record whose value is the file's bytes, exactly (kcat sends a file as one message)."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed (Debian package kcat; `make test` installs it)"
    argv = [kcat, "-P", "-b", bootstrap, "-t", topic, "-k", key,
            "-X", "message.max.bytes=8000000", str(value_file)]
    done = subprocess.run(argv, timeout=30, capture_output=True, text=True)
    if done.returncode != 0 and QUIRK in done.stderr:
        env = {**os.environ, "LD_LIBRARY_PATH": _bundled_librdkafka_dir()}
        done = subprocess.run(argv, timeout=30, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"kcat failed: {done.stderr[-2000:]}"
