"""Fixtures for the deployment tests: the built overlays (kubectl kustomize, once per session), and
the prod overlay with components/redis-cluster in place of components/redis."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest

from tools.deploycheck import manifests


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict]]:
    return {path.name: manifests.kustomize_build(path) for path in manifests.overlays()}


@pytest.fixture
def prod(built: dict[str, list[dict]]) -> list[dict]:
    """A private deep copy of the prod overlay's objects, free to mutate."""
    return copy.deepcopy(built["prod"])


@pytest.fixture(scope="session")
def cluster_built(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The prod overlay with components/redis-cluster instead of components/redis, built by
    kubectl kustomize from a scratch overlay that names the real base and components."""
    return manifests.kustomize_build(
        redis_cluster_overlay(tmp_path_factory.mktemp("redis-cluster-overlay"))
    )


@pytest.fixture
def cluster(cluster_built: list[dict]) -> list[dict]:
    """A private deep copy of that build, free to mutate."""
    return copy.deepcopy(cluster_built)


def redis_cluster_overlay(directory: Path) -> Path:
    prod = manifests.DEPLOY_DIR / "k8s/overlays/prod"
    k8s = Path(os.path.relpath(manifests.DEPLOY_DIR / "k8s", directory))
    text = (prod / "kustomization.yaml").read_text()
    assert "- ../../components/redis\n" in text, "the prod overlay no longer includes Redis"
    text = text.replace("- ../../components/redis\n", "- ../../components/redis-cluster\n")
    (directory / "kustomization.yaml").write_text(text.replace("../../", f"{k8s.as_posix()}/"))
    shutil.copy(prod / "namespace.yaml", directory / "namespace.yaml")
    return directory
