"""`socialproof deploy check` (what `make deploy-check` runs) passes on the repository's deploy/
and fails on a copy with broken manifests, each FAIL line naming the tool that found the problem,
its check id and where; a checkov finding alone fails the build; other layouts operators use
(external Redis) pass the same checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tools.deploycheck import check, manifests
from tools.deploycheck.cli import deploy_app


def copy_of_deploy(target: Path) -> Path:
    shutil.copytree(manifests.DEPLOY_DIR, target / "deploy")
    return target / "deploy"


def run_check(deploy_dir: Path):
    return CliRunner().invoke(deploy_app, ["check", "--deploy-dir", str(deploy_dir)])


def break_file(deploy_dir: Path, path: str, old: str, new: str) -> None:
    file = deploy_dir / path
    text = file.read_text()
    assert old in text, (path, old)
    file.write_text(text.replace(old, new, 1))


def fail_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL ")]


def test_deploy_check_passes_on_the_repository() -> None:
    result = run_check(manifests.DEPLOY_DIR)
    assert result.exit_code == 0, result.output
    assert "deploy-check: ok" in result.output
    pinned = re.search(r'"checkov==([^"]+)"', (manifests.ROOT / "pyproject.toml").read_text())
    assert f"checkov {pinned[1]}:" in result.output
    for name in (
        "overlays/dev",
        "overlays/prod",
        "jobs/replay-rebuild.yaml",
        "jobs/topics-dump.yaml",
    ):
        assert f"checked {name}" in result.output


def test_a_checkov_finding_alone_fails_the_build(tmp_path: Path) -> None:
    deploy_dir = copy_of_deploy(tmp_path)
    break_file(
        deploy_dir,
        "k8s/base/orders.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    )
    result = run_check(deploy_dir)
    assert result.exit_code == 1, result.output
    assert fail_lines(result.output) == [
        f"FAIL [checkov CKV_K8S_22] {overlay}: Deployment/orders: "
        "Use read-only filesystem for containers where possible"
        for overlay in ("dev", "prod")
    ]


#: (file under deploy/, text, replacement, the start of the FAIL line it must cause)
BREAKS = [
    (
        "k8s/overlays/prod/kustomization.yaml",
        'newTag: "0.1.0"',
        "newTag: latest",
        "[checkov CKV_K8S_14] prod: Deployment/catalog",
    ),
    (
        "k8s/jobs/replay-rebuild.yaml",
        "runAsUser: 10001",
        "runAsUser: 0",
        "[checkov CKV_K8S_40] jobs/replay-rebuild.yaml: Job/socialproof-replay-rebuild-*",
    ),
    (
        "k8s/base/notifier.yaml",
        "      containers:",
        "      hostPID: true\n      containers:",
        "[checkov CKV_K8S_17] prod: Deployment/notifier",
    ),
    (
        "k8s/overlays/prod/kustomization.yaml",
        "value: 3\n",
        "value: 8\n",
        "[socialproof processor-partitions] prod: Deployment/stream-processor",
    ),
    (
        "k8s/components/redis/redis.conf",
        "maxmemory-policy noeviction",
        "maxmemory-policy allkeys-lru",
        "[socialproof redis-store] prod: StatefulSet/redis",
    ),
    (
        "k8s/components/kafka/kafka.yaml",
        "auto.create.topics.enable: false",
        "auto.create.topics.enable: true",
        "[socialproof kafka-cluster] prod: Kafka/socialproof",
    ),
    (
        "k8s/base/social.yaml",
        "containerPort: 8003",
        "containerPort: http",
        "[kubernetes-validate schema] prod: Deployment/social",
    ),
    (
        "k8s/components/kafka/kafka.yaml",
        "type: internal",
        "type: intern",
        "[jsonschema crd-schema] prod: Kafka/socialproof: Strimzi 0.48.0 CRD: $.spec.kafka.listeners[0].type",
    ),
    (
        "k8s/components/monitoring/podmonitors.yaml",
        "podMetricsEndpoints:",
        "podMetricEndpoints:",
        "[jsonschema crd-schema] prod: PodMonitor/socialproof",
    ),
    (
        "k8s/components/kafka/topics.yaml",
        "partitions: 6",
        "partitions: 3",
        "[socialproof topics] k8s/components/kafka/topics.yaml",
    ),
    (
        "k8s/overlays/dev/kustomization.yaml",
        "resources:\n  - namespace.yaml\n  - ../../base",
        "resources:\n  - namespace.yaml\n  - ../../basis",
        "[kustomize build] dev",
    ),
    ("README.md", "### SocialproofBatchSlow", "### Batch", "[socialproof runbook] prod: alert"),
    (
        "k8s/components/monitoring/alerts.yaml",
        "> 10000",
        "> > 10000",
        "[promtool promql] prod: PrometheusRule",
    ),
]


@pytest.fixture(scope="module")
def broken_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One deploy-check of a copy with every break of BREAKS at once: each causes its own line
    (the dev overlay does not build, so the others show in prod)."""
    deploy_dir = copy_of_deploy(tmp_path_factory.mktemp("broken"))
    for path, old, new, _expected in BREAKS:
        break_file(deploy_dir, path, old, new)
    result = run_check(deploy_dir)
    assert result.exit_code == 1, result.output
    return result.output


@pytest.mark.parametrize(("path", "old", "new", "expected"), BREAKS, ids=[b[3] for b in BREAKS])
def test_deploy_check_names_the_tool_and_check_of_each_broken_manifest(
    broken_output: str, path: str, old: str, new: str, expected: str
) -> None:
    assert any(line.startswith(f"FAIL {expected}") for line in fail_lines(broken_output)), (
        broken_output
    )


def test_external_redis_component_passes_the_checks(tmp_path: Path) -> None:
    deploy_dir = copy_of_deploy(tmp_path)
    overlay = deploy_dir / "k8s/overlays/prod-external-redis"
    prod = (deploy_dir / "k8s/overlays/prod/kustomization.yaml").read_text()
    overlay.mkdir()
    shutil.copy(deploy_dir / "k8s/overlays/prod/namespace.yaml", overlay)
    (overlay / "kustomization.yaml").write_text(
        prod.replace("../../components/redis\n", "../../components/redis-external\n")
    )
    objects = manifests.kustomize_build(overlay)
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    assert any(o["metadata"]["name"] == "socialproof-to-external-redis" for o in objects)
    assert check.check_objects(objects) == []


def test_the_socialproof_command_starts_without_the_deploy_tools() -> None:
    """The service image installs socialproof, contracts and services, not tools/."""
    code = (
        "import importlib.abc, sys\n"
        "class NoTools(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'tools' or name.startswith('tools.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTools())\n"
        "from cli.main import app\n"
        "print(sorted(g.name for g in app.registered_groups))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "deploy" not in result.stdout and "topics" in result.stdout
