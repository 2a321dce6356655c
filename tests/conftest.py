"""Shared fixtures: session-scoped real services (broker, Redis, every socialproof process) and
per-test isolation (unique ids, a clean Redis namespace where a test needs one).

Backends are chosen by ``SOCIALPROOF_TEST_BACKEND`` (see ``tests/support/backends.py``).
Service logs of the session stack are written to ``test-artifacts/stack/logs/``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from socialproof.kafka import ensure_topics
from socialproof.processes import free_port
from socialproof.settings import DEFAULT_PORTS, Settings
from tests.support.backends import FAST_FAILOVER_ENV, Backend, provide_backend

# Session fixtures shared by every module: imported here once, so a session has one of each (a
# module importing them itself would get its own Redis Cluster).
from tests.support.rediscluster import (  # noqa: F401 (fixtures)
    redis_cluster,
    redis_cluster_session,
)
from tests.support.stores import store  # noqa: E402,F401 (a fixture)
from tools.devstack import Stack, StackConfig

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SERVICE_TOKEN = "test-service-token-" + uuid.uuid4().hex[:12]
UNLIMITED_READS = {"SOCIALPROOF_RATE_LIMIT_PER_S": "1000000", "SOCIALPROOF_RATE_LIMIT_BURST": "1000000"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    with provide_backend() as b:
        yield b


@pytest.fixture(scope="session")
def settings(backend: Backend) -> Settings:
    """Settings pointing at the session backend, as a service would read them."""
    return Settings(
        kafka_bootstrap_servers=backend.bootstrap,
        redis_url=backend.redis_url,
        service_token=SERVICE_TOKEN,
        kafka_session_timeout_ms=int(FAST_FAILOVER_ENV["SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS"]),
        kafka_heartbeat_interval_ms=int(FAST_FAILOVER_ENV["SOCIALPROOF_KAFKA_HEARTBEAT_INTERVAL_MS"]),
    )


@pytest.fixture(scope="session")
def topics(settings: Settings) -> None:
    ensure_topics(settings)


@pytest.fixture
def own_topics(settings: Settings) -> Iterator[Settings]:
    """The session's servers with the registry's topics under a prefix of this test's own
    (created, then deleted after the test)."""
    from tests.integration.test_topic_prefix import delete_topics_with_prefix

    mine = settings.model_copy(update={"kafka_topic_prefix": f"own{uuid.uuid4().hex[:8]}."})
    try:
        ensure_topics(mine)
        yield mine
    finally:
        delete_topics_with_prefix(mine)


@pytest.fixture(scope="session")
def stack(backend: Backend, topics: None, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Every service and the stream worker as real processes, on free ports, for the session."""
    workdir = ARTIFACTS / "stack"
    shutil.rmtree(workdir, ignore_errors=True)
    config = StackConfig(
        workdir=workdir,
        ports={name: free_port() for name in DEFAULT_PORTS},
        worker_web_port=free_port(),
        kafka_bootstrap_servers=backend.bootstrap,
        redis_url=backend.redis_url,
        service_token=SERVICE_TOKEN,
        # Every test shares one client address: the notifier's per-client rate limit is tested
        # on a notifier of its own (tests/integration/test_notifier_api.py), not here.
        extra_env={**FAST_FAILOVER_ENV, **UNLIMITED_READS},
        echo=False,
        log_format="json",
    )
    s = Stack(config)
    try:
        s.start_services()
        yield s
    finally:
        failed = request.session.testsfailed
        if failed:
            for proc in s.processes:
                print(f"\n----- last output of {proc.name} -----\n{proc.tail(40)}")
        s.stop()


@pytest.fixture
def uid(request: pytest.FixtureRequest):
    """unique ids per test: uid('p') -> 'p-<test>-<random>' (no cross-test interference)."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]

    def make(prefix: str) -> str:
        return f"{prefix}-{base}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def namespace(settings: Settings, redis_client: redis_sync.Redis) -> Iterator[str]:
    """A fresh, empty Redis namespace for tests that use the store directly; removed after."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    keys = list(redis_client.scan_iter(f"{ns}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


def _client(base_url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=10.0)


@pytest.fixture
def orders_api(stack: Stack) -> Iterator[httpx.Client]:
    with _client(stack.url("orders"), SERVICE_TOKEN) as client:
        yield client


@pytest.fixture
def notifier_api(stack: Stack) -> Iterator[httpx.Client]:
    with _client(stack.url("notifier"), None) as client:
        yield client


@pytest.fixture
def service_token() -> str:
    return SERVICE_TOKEN


@pytest.fixture(scope="session", autouse=True)
def _artifacts_dir() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    os.environ.setdefault("SOCIALPROOF_TEST_ARTIFACTS", str(ARTIFACTS))
