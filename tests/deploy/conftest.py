"""Fixtures for the deployment tests: the built overlays (kubectl kustomize, once per session)."""

from __future__ import annotations

import copy

import pytest

from tools.deploycheck import rules as deploy


@pytest.fixture(scope="session")
def built() -> dict[str, list[dict]]:
    return {path.name: deploy.kustomize_build(path) for path in deploy.overlays()}


@pytest.fixture
def prod(built: dict[str, list[dict]]) -> list[dict]:
    """A private deep copy of the prod overlay's objects, free to mutate."""
    return copy.deepcopy(built["prod"])
