"""`socialproof deploy check` (what `make deploy-check` runs) passes on the repository's deploy/
and fails, naming the rule, on a copy with one broken manifest; other layouts operators use
(external Redis) pass the same checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tools.deploycheck import rules as deploy


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "deploy"
    shutil.copytree(deploy.DEPLOY_DIR, target)
    return target


def run_check(deploy_dir: Path):
    return CliRunner().invoke(deploy.deploy_app, ["check", "--deploy-dir", str(deploy_dir)])


def test_deploy_check_passes_on_the_repository() -> None:
    result = run_check(deploy.DEPLOY_DIR)
    assert result.exit_code == 0, result.output
    assert "deploy-check: ok" in result.output
    for name in (
        "overlays/dev",
        "overlays/prod",
        "jobs/replay-rebuild.yaml",
        "jobs/topics-dump.yaml",
    ):
        assert f"checked {name}" in result.output


@pytest.mark.parametrize(
    ("path", "old", "new", "expected"),
    [
        (
            "k8s/base/orders.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "[read-only-root-fs]",
        ),
        ("k8s/base/kustomization.yaml", 'newTag: "0.1.0"', "newTag: latest", "[pinned-images]"),
        ("k8s/jobs/replay-rebuild.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "[non-root]"),
        (
            "k8s/base/notifier.yaml",
            "      containers:",
            "      hostPID: true\n      containers:",
            "[host-isolation]",
        ),
        (
            "k8s/overlays/prod/kustomization.yaml",
            "value: 3\n",
            "value: 8\n",
            "[processor-partitions]",
        ),
        ("k8s/base/social.yaml", "containerPort: 8003", "containerPort: http", "[schema]"),
        ("k8s/components/kafka/topics.yaml", "partitions: 6", "partitions: 3", "[topics]"),
        ("k8s/overlays/dev/kustomization.yaml", "../../base", "../../basis", "[build]"),
        ("README.md", "### SocialproofBatchSlow", "### Batch", "[runbook]"),
        ("k8s/components/monitoring/alerts.yaml", "> 10000", "> > 10000", "[promql]"),
    ],
)
def test_deploy_check_fails_on_a_broken_manifest(
    deploy_copy: Path, path: str, old: str, new: str, expected: str
) -> None:
    file = deploy_copy / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    result = run_check(deploy_copy)
    assert result.exit_code == 1, result.output
    assert expected in result.output


def test_external_redis_component_passes_the_checks(tmp_path: Path) -> None:
    overlay = tmp_path / "deploy/k8s/overlays/prod-external-redis"
    shutil.copytree(deploy.DEPLOY_DIR, tmp_path / "deploy")
    prod = (tmp_path / "deploy/k8s/overlays/prod/kustomization.yaml").read_text()
    overlay.mkdir()
    shutil.copy(tmp_path / "deploy/k8s/overlays/prod/namespace.yaml", overlay)
    (overlay / "kustomization.yaml").write_text(
        prod.replace("../../components/redis\n", "../../components/redis-external\n")
    )
    objects = deploy.kustomize_build(overlay)
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    assert any(o["metadata"]["name"] == "socialproof-to-external-redis" for o in objects)
    assert deploy.check_objects(objects) == []
