"""Fixtures of the fault-injection tests: a private broker and Redis per test module (faults are
never injected into the session stack, which other tests share)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ARTIFACTS, SERVICE_TOKEN
from tests.support.private import PrivateBackend, private_backend


@pytest.fixture(scope="module")
def private(request: pytest.FixtureRequest) -> Iterator[PrivateBackend]:
    workdir = ARTIFACTS / "reliability" / request.module.__name__.rsplit(".", 1)[-1]
    with private_backend(workdir, SERVICE_TOKEN) as backend:
        yield backend
