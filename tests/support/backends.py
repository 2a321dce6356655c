"""Where the test suite's Kafka and Redis come from.

``SOCIALPROOF_TEST_BACKEND`` chooses:

- ``embedded`` (default): Apache Kafka (one KRaft process, :mod:`tools.embeddedkafka`) and
  Debian's redis-server, started on free ports for the session. When ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are set, those
  existing servers are used instead (each independently).
- ``containers``: testcontainers' Kafka (Apache Kafka, KRaft) and Redis images; needs a reachable
  Docker engine and says so clearly when there is none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from socialproof.processes import ManagedProcess, free_port
from tools.devstack import LOCAL_ENV, embedded_broker, redis_server, wait_for_broker, wait_for_redis

# testcontainers' KafkaContainer starts Confluent's images (its with_kraft() refuses any tag below
# 7.0.0, so an apache/kafka tag cannot run there): CP 8.0 is Apache Kafka 4.0, KRaft only.
KAFKA_IMAGE = "confluentinc/cp-kafka:8.0.0"
REDIS_IMAGE = "redis:7.2.5-alpine"

# The brokers the suite starts (the session's, private ones, the bench's in its smoke runs: every
# child inherits this) live seconds to minutes (the session's the whole run) under light load: on
# the C1 compiler alone they start on less CPU and spend none on C2 compilations, which on 2 cores
# the tests wait for. Measured: test_kafka_cluster.py 88 -> 75 s, the e2e bench smoke run (then
# test_bench_e2e_scaling.py, on the bench's own broker) 30 -> 25 s, test_counters_e2e.py 13.3 ->
# 11.7 s (the session's setup), the private backend's setup 4.5-5.4 -> 1.7-3.9 s. `make run` (the
# dev stack's tests too) and `make bench` keep the default JIT.
os.environ.setdefault("SOCIALPROOF_KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")

# Tests that SIGKILL a consumer want its group to notice within seconds: the broker's minimum
# session timeout (group.min.session.timeout.ms, 6 s) instead of the 45 s default. Deployments set
# their own in the ConfigMap; the dev stack and the bench keep the defaults.
FAST_FAILOVER_ENV = {
    "SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "SOCIALPROOF_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    **LOCAL_ENV,
}


@dataclass
class Backend:
    kind: str  # "embedded" (started here), "existing" or "containers"
    bootstrap: str
    redis_url: str
    broker_proc: ManagedProcess | None = None
    redis_proc: ManagedProcess | None = None


def backend_name() -> str:
    name = os.environ.get("SOCIALPROOF_TEST_BACKEND", "embedded").strip().lower()
    if name not in ("embedded", "containers"):
        raise RuntimeError(
            f"SOCIALPROOF_TEST_BACKEND={name!r}: expected 'embedded' (default) or 'containers'"
        )
    return name


def docker_reachable() -> tuple[bool, str]:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # any failure means no engine for our purposes
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


@contextmanager
def provide_backend(workdir: Path | None = None) -> Iterator[Backend]:
    if backend_name() == "containers":
        with _containers() as backend:
            yield backend
        return
    with _embedded(workdir) as backend:
        yield backend


@contextmanager
def _embedded(workdir: Path | None) -> Iterator[Backend]:
    tmp = Path(workdir or tempfile.mkdtemp(prefix="socialproof-test-"))
    procs: list[ManagedProcess] = []
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        kind = "existing"
        broker = None
        if not bootstrap:
            port = free_port()
            broker = embedded_broker(
                port, tmp / "kafka", echo=False, log_path=tmp / "broker.log"
            ).start()
            procs.append(broker)
            bootstrap, kind = f"127.0.0.1:{port}", "embedded"
        redis_url = os.environ.get("REDIS_URL")
        redis = None
        if not redis_url:
            port = free_port()
            redis = redis_server(port, tmp / "redis", echo=False, log_path=tmp / "redis.log")
            procs.append(redis.start())
            redis_url = f"redis://127.0.0.1:{port}/0"
        wait_for_broker(bootstrap, proc=broker)
        wait_for_redis(redis_url)
        yield Backend(kind, bootstrap, redis_url, broker, redis)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _containers() -> Iterator[Backend]:
    ok, why = docker_reachable()
    if not ok:
        raise RuntimeError(
            "SOCIALPROOF_TEST_BACKEND=containers needs a reachable Docker engine "
            f"(DOCKER_HOST or /var/run/docker.sock): {why}. Unset it to use the embedded broker."
        )
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka, RedisContainer(REDIS_IMAGE) as redis:
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(redis.port)
        yield Backend("containers", kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")
