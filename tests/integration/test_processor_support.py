"""Helpers for the stream processor's tests (no tests here): store dumps, publishing event lists,
waiting for the worker to have applied them, and extra worker processes."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from contracts.events import Event
from socialproof.kafka import Delivered, EventPublisher
from socialproof.processes import ManagedProcess, free_port
from socialproof.settings import Settings
from tests.support.backends import FAST_FAILOVER_ENV
from tests.support.stores import dump_namespace
from tests.support.waiting import wait_for
from tools.devstack import wait_worker_assigned

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "processor"


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


#: every key of a namespace with its value, for state comparisons
dump = dump_namespace


def fanout_errors(state: dict[str, object], fanout_at: int) -> list[str]:
    """Where a ``dump`` breaks the friends_bought fan-out's invariants (contracts.views): the
    viewers in ``fanout`` are exactly those with ``fanout_at`` friendships on record, each of
    their ``fb:{viewer}|{product}`` sets is exactly friends ∩ consenting buyers, and each user's
    ``fo`` set names exactly their fanned-out friends."""

    def members(key: str) -> set:
        return set(state.get(key) or [])  # type: ignore[arg-type]

    users = {k.split(":")[1] for k in state if k.startswith("user:") and k.endswith(":fr")}
    want = {u for u in users if fanout_at and len(members(f"user:{u}:fr")) >= fanout_at}
    errors = []
    if members("fanout") != want:
        errors.append(f"fanout {sorted(members('fanout'))} != {sorted(want)}")
    products = {k.split(":", 1)[1] for k in state if k.startswith("cbuyers:")}
    expected = {
        f"fb:{v}|{p}": sorted(members(f"friends:{v}") & members(f"cbuyers:{p}"))
        for v in want
        for p in products
    }
    expected = {k: v for k, v in expected.items() if v}
    actual = {
        k: [member for member, score in v if score == 0]  # type: ignore[attr-defined]
        for k, v in state.items()
        if k.startswith("fb:")
    }
    if actual != expected:
        errors.append(f"fb sets: {first_difference(actual, expected)}")
    for u in users:
        fo = {v for v in want if u in members(f"friends:{v}")}
        if members(f"user:{u}:fo") != fo:
            errors.append(f"user:{u}:fo {sorted(members(f'user:{u}:fo'))} != {sorted(fo)}")
    return errors


def first_difference(a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} != {b.get(key)!r}"
    return "none"


async def publish(
    settings: Settings, events: Iterable[Event], concurrently: bool = False
) -> list[Delivered]:
    """Publish with the real publisher, each acknowledged by the broker; in the given order,
    or all at once (``concurrently``) so that they reach the worker in few batches."""
    publisher = EventPublisher(settings, client_id="test-processor")
    try:
        if concurrently:
            return list(await asyncio.gather(*(publisher.publish(e) for e in events)))
        return [await publisher.publish(event) for event in events]
    finally:
        publisher.close()


def publish_all(settings: Settings, events: Iterable[Event]) -> list[Delivered]:
    return asyncio.run(publish(settings, events))


def processed_count(worker_url: str) -> int:
    """The worker's ``socialproof_events_processed_total`` (every decoded event, duplicates too)."""
    total = 0.0
    for line in httpx.get(f"{worker_url}/metrics", timeout=5).text.splitlines():
        if line.startswith("socialproof_events_processed_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def wait_processed(worker_url: str, at_least: int, timeout: float = 30.0) -> None:
    wait_for(
        lambda: processed_count(worker_url) >= at_least,
        timeout,
        f"the worker at {worker_url} to have processed {at_least} events",
        interval=0.05,
    )


@dataclass
class ExtraWorker:
    proc: ManagedProcess
    url: str
    namespace: str
    group: str

    def stop(self) -> None:
        self.proc.stop()


def start_worker(
    settings: Settings,
    namespace: str,
    group: str,
    name: str = "worker",
    wait: bool = True,
    extra_env: dict[str, str] | None = None,
) -> ExtraWorker:
    """A real ``socialproof worker`` process with its own namespace, group and web port."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
        # a prefix of the settings' own (else the environment's: test_topic_prefix.py sets it)
        **({"SOCIALPROOF_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix}
           if settings.kafka_topic_prefix else {}),
        "SOCIALPROOF_REDIS_NAMESPACE": namespace,
        "SOCIALPROOF_WORKER_CONSUMER_GROUP": group,
        "SOCIALPROOF_WORKER_WEB_PORT": str(port),
        "SOCIALPROOF_LOG_FORMAT": "json",
        **FAST_FAILOVER_ENV,
        **(extra_env or {}),
    }
    proc = ManagedProcess(
        name=name,
        argv=[sys.executable, "-m", "cli", "worker"],
        env=env,
        cwd=str(ROOT),
        echo=False,
        log_path=ARTIFACTS / f"{name}-{namespace}-{uuid.uuid4().hex[:6]}.log",
    ).start()
    worker = ExtraWorker(proc, f"http://127.0.0.1:{port}", namespace, group)
    if wait:
        wait_worker_assigned(f"{worker.url}/readyz", 90, proc)
    return worker
