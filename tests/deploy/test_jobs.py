"""The Job templates work the way deploy/README.md says: `kubectl set env/set image --local`
fill in the arguments and the image without a cluster, and the result still passes the checks."""

from __future__ import annotations

import subprocess

import pytest

from tools.deploycheck import check, manifests


def render(template: str, container: str, env: list[str], image: str) -> list[dict]:
    kubectl = manifests.kubectl_binary()
    path = manifests.DEPLOY_DIR / "k8s/jobs" / template
    with_env = subprocess.run(
        [kubectl, "set", "env", "--local", "-f", str(path), *env, "-o", "yaml"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    with_image = subprocess.run(
        [kubectl, "set", "image", "--local", "-f", "-", f"{container}={image}", "-o", "yaml"],
        input=with_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return manifests.load_documents(with_image)


@pytest.mark.parametrize(
    ("template", "container", "env", "args"),
    [
        (
            "replay-rebuild.yaml",
            "replay",
            ["REPLAY_FROM=2026-11-01T00:00:00Z"],
            ["replay", "rebuild", "--from", "$(REPLAY_FROM)", "--switch", "--yes"],
        ),
        (
            "topics-dump.yaml",
            "dump",
            [
                "DUMP_TOPIC=socialproof.deadletter",
                "DUMP_FROM=2026-11-24T00:00:00Z",
                "DUMP_TO=2026-11-25T00:00:00Z",
            ],
            ["topics", "dump", "$(DUMP_TOPIC)", "--from", "$(DUMP_FROM)", "--to", "$(DUMP_TO)"],
        ),
    ],
)
def test_documented_job_pipeline(
    built: dict[str, list[dict]], template: str, container: str, env: list[str], args: list[str]
) -> None:
    (job,) = render(template, container, env, "registry.example/socialproof:0.1.1")
    spec = manifests.pod_spec(job)
    (c,) = spec["containers"]
    assert c["image"] == "registry.example/socialproof:0.1.1"
    assert c["args"] == args
    values = {e["name"]: e.get("value") for e in c["env"]}
    for pair in env:
        name, value = pair.split("=", 1)
        assert values[name] == value
    assert job["metadata"]["generateName"]  # `kubectl create` names each run
    # as `kubectl -n NAMESPACE create` makes it, next to the prod overlay it runs with
    (job,) = manifests.in_namespace([job], manifests.namespace_of(built["prod"]))
    problems = check.check_objects(
        [job, *built["prod"]],
        validate=[job],
        rules=[r for r in check.RULES if r not in check.OVERLAY_ONLY_RULES],
    )
    assert [p for p in problems if p.where.startswith("Job/")] == []


def test_job_templates_find_the_dev_overlays_config_and_secrets(
    built: dict[str, list[dict]],
) -> None:
    present = {(o["kind"], o["metadata"]["name"]) for o in built["dev"]}
    for path in manifests.job_templates():
        for job in manifests.load_documents(path.read_text()):
            for c in manifests.containers(manifests.pod_spec(job)):
                for source in c.get("envFrom", []):
                    assert ("ConfigMap", source["configMapRef"]["name"]) in present
                for var in c.get("env", []):
                    secret = var.get("valueFrom", {}).get("secretKeyRef")
                    if secret:
                        assert ("Secret", secret["name"]) in present, (path.name, secret)
