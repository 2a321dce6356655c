"""Fixtures for the deployment tests: the built overlays (kubectl kustomize, once per session)."""

from __future__ import annotations

import copy

import pytest

from tools.deploycheck import manifests


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict]]:
    return {path.name: manifests.kustomize_build(path) for path in manifests.overlays()}


@pytest.fixture
def prod(built: dict[str, list[dict]]) -> list[dict]:
    """A private deep copy of the prod overlay's objects, free to mutate."""
    return copy.deepcopy(built["prod"])
