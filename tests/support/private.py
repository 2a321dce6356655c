"""A private backend for fault-injection tests: an embedded broker and a redis-server (append-only,
as the dev stack runs it) of their own, on free ports, plus socialproof processes started against
them. Faults (SIGKILL, SIGSTOP, restarts) are injected here, never into the session stack, which
other tests rely on.

    with private_backend(workdir, token) as pb:   # or the module-scoped `private` fixture
        worker = pb.worker("ns1", "g1")             # a real `socialproof worker` (Proc)
        notifier = pb.service("notifier", "ns1")    # a real `socialproof serve notifier` (Proc)
        pb.restart_redis(crash=True)                # SIGKILL, then the same port and data

Start processes from the test's own thread: the dev stack gives children a parent-death signal,
which Linux ties to the *thread* that started them (a child started from a pool thread dies when
that thread ends).
"""

from __future__ import annotations

import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from socialproof.kafka import ensure_topics
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.support.backends import FAST_FAILOVER_ENV
from tools.devstack import (
    embedded_broker,
    redis_server,
    wait_for_broker,
    wait_for_redis,
    wait_ready,
    wait_worker_assigned,
)

ROOT = Path(__file__).resolve().parents[2]

# The private broker accepts consumer session timeouts down to 1 s (Apache Kafka's minimum,
# group.min.session.timeout.ms, is 6 s), so a test that SIGKILLs worker after worker need not
# wait 6 s for each dead member to leave its group: it starts them with QUICK_FAILOVER_ENV.
# FAST_FAILOVER_ENV (6 s) stays the default of every private process.
MIN_SESSION_TIMEOUT_MS = 1000
QUICK_FAILOVER_ENV = {
    "SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS": "2000",
    "SOCIALPROOF_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}


@dataclass
class Proc:
    """A socialproof process of the private backend and the URL it serves on."""

    proc: ManagedProcess
    url: str

    def stop(self) -> None:
        self.proc.stop()

    def kill(self) -> None:
        self.proc.kill()


@dataclass
class PrivateBackend:
    workdir: Path
    token: str
    broker_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    broker: ManagedProcess | None = None
    redis: ManagedProcess | None = None
    started: list[ManagedProcess] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def settings(self) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.bootstrap, redis_url=self.redis_url,
            service_token=self.token,
        )

    def env(self, namespace: str = "sp", **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "SOCIALPROOF_SERVICE_TOKEN": self.token,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_LOG_FORMAT": "json",
            "SOCIALPROOF_RATE_LIMIT_PER_S": "1000000",
            "SOCIALPROOF_RATE_LIMIT_BURST": "1000000",
            **FAST_FAILOVER_ENV,
            **extra,
        }

    # --- infrastructure -----------------------------------------------------------------------

    def start_broker(self) -> None:
        self.broker = embedded_broker(
            self.broker_port, self.workdir / "kafka", echo=False,
            log_path=self.workdir / "broker.log",
            overrides={"group.min.session.timeout.ms": str(MIN_SESSION_TIMEOUT_MS)},
        ).start()
        wait_for_broker(self.bootstrap, proc=self.broker)
        ensure_topics(self.settings)

    def start_redis(self) -> None:
        self.redis = redis_server(
            self.redis_port, self.workdir / "redis", echo=False,
            log_path=self.workdir / "redis.log",
        ).start()
        wait_for_redis(self.redis_url)

    def restart_redis(self, crash: bool = False) -> None:
        """Stop Redis as an operator would (SIGTERM: it writes its append-only file and exits),
        or kill it (``crash``: SIGKILL, nothing flushed by Redis itself), and start it again on
        the same port and data directory."""
        assert self.redis is not None
        if crash:
            self.redis.kill()
        else:
            self.redis.stop()
        self.start_redis()

    # --- socialproof processes ----------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        log = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        proc = ManagedProcess(name=name, argv=argv, env=env, cwd=str(ROOT), echo=False,
                              log_path=log).start()
        self.started.append(proc)
        return proc

    def worker(self, namespace: str, group: str, wait: bool = True,
               argv: list[str] | None = None, **extra: str) -> Proc:
        """``socialproof worker``, or ``argv`` (the worker with a fault-injection seam)."""
        port = free_port()
        env = self.env(namespace, **extra)
        env.update(SOCIALPROOF_WORKER_CONSUMER_GROUP=group,
                   SOCIALPROOF_WORKER_WEB_PORT=str(port))
        proc = self._spawn("worker", argv or [sys.executable, "-m", "cli", "worker"], env)
        url = f"http://127.0.0.1:{port}"
        if wait:
            wait_worker_assigned(f"{url}/readyz", 60, proc)
        return Proc(proc, url)

    def service(self, service: str, namespace: str = "sp", port: int | None = None,
                wait: bool = True, **extra: str) -> Proc:
        port = port or free_port()
        env = self.env(namespace, **extra)
        env[f"SOCIALPROOF_{service.upper()}_PORT"] = str(port)
        proc = self._spawn(service, service_argv(service), env)
        url = f"http://127.0.0.1:{port}"
        if wait:
            wait_ready(f"{url}/readyz", 60, f"the private {service}", proc)
        return Proc(proc, url)

    def stop(self) -> None:
        # SIGTERM to every process first, so their shutdowns overlap; then wait for each
        for proc in self.started:
            proc.signal(signal.SIGTERM)
        for proc in reversed(self.started):
            proc.stop()
        for infra in (self.redis, self.broker):
            if infra is not None:
                infra.signal(signal.SIGCONT)  # a test may have frozen it
                infra.stop()


@contextmanager
def private_backend(workdir: Path, token: str) -> Iterator[PrivateBackend]:
    shutil.rmtree(workdir, ignore_errors=True)  # no append-only file from an earlier run
    workdir.mkdir(parents=True)
    pb = PrivateBackend(workdir, token)
    try:
        pb.start_broker()
        pb.start_redis()
        yield pb
    finally:
        pb.stop()


@pytest.fixture(scope="module")
def private(request: pytest.FixtureRequest) -> Iterator[PrivateBackend]:
    """A private backend per test module (import this fixture into a conftest.py)."""
    from tests.conftest import ARTIFACTS, SERVICE_TOKEN

    workdir = ARTIFACTS / "private" / request.module.__name__.rsplit(".", 1)[-1]
    with private_backend(workdir, SERVICE_TOKEN) as backend:
        yield backend


def metric_total(url: str, name: str) -> float:
    """The sum of a Prometheus counter over its labels, from ``url``/metrics (0 when absent)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
