"""The reward relay publishes outbox entries to promotions.rewards exactly once, against the real
broker and Redis: the right events in stream order; nothing again after a crash between a commit
and its checkpoint (a real SIGKILL of a relay process); a fenced zombie's transaction never
visible; Redis dying right after a commit, and the broker stopping with entries pending, end
with every entry published once; and in a real worker process it runs as a task.

Entries are XADDed here with the fields the processor's script writes (contracts/views.py); each
test has its own topic prefix, namespace and consumer group, so its own ``transactional.id``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts.events import RewardEarned, RewardWithdrawn
from contracts.layout import outbox_prefix
from contracts.views import Keys
from services.counters import relay as relay_module
from services.counters.relay import REWARD_EVENT_NAMESPACE, RewardRelay, owns_partition_zero
from services.counters.settings import CountersSettings
from socialproof.processes import ManagedProcess, free_port, wait_until, worker_argv
from socialproof.redis import connect_store
from tests.support.backends import Backend
from tests.support.relays import (
    RelayProcess,
    add_entries,
    entry_fields,
    read_rewards,
    relay_settings,
)
from tests.support.waiting import wait_for, wait_for_async
from tools.devstack import embedded_broker, redis_server, wait_for_broker, wait_for_redis


@pytest.fixture
def settings(backend: Backend) -> Iterator[CountersSettings]:
    """Settings of the test's own (prefix, namespace, group); its topics and keys removed after."""
    s = relay_settings(backend.bootstrap, backend.redis_url)
    yield s
    _cleanup(s)


def _cleanup(s: CountersSettings) -> None:
    client = redis_sync.Redis.from_url(s.redis_url)
    try:
        keys = list(client.scan_iter(f"{s.redis_namespace}:*"))
        if keys:
            client.delete(*keys)
    except redis_sync.ConnectionError:
        pass  # a private Redis already stopped
    finally:
        client.close()
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap_servers})
    try:
        names = [
            n for n in admin.list_topics(timeout=5).topics if n.startswith(s.kafka_topic_prefix)
        ]
        for future in admin.delete_topics(names, operation_timeout=10).values() if names else []:
            future.result()
    except Exception:
        pass  # a private broker already stopped


def checkpoint(redis, s: CountersSettings) -> dict[str, str]:
    return redis.hgetall(Keys(s.redis_namespace).rewards_relay)


def checkpointed(redis, s: CountersSettings, entry_id: str) -> bool:
    return checkpoint(redis, s).get("id") == entry_id


async def published(redis, s: CountersSettings, entry_id: str, what: str, timeout=20.0) -> None:
    """Until the relay's checkpoint names ``entry_id`` (it is written after the commit)."""
    await wait_for_async(lambda: asyncio.to_thread(checkpointed, redis, s, entry_id), timeout, what)


async def relay_state(relay: RewardRelay, state: str, what: str, timeout=20.0) -> None:
    async def now() -> bool:
        return relay.state == state

    await wait_for_async(now, timeout, what)


def assert_published_once(s: CountersSettings, ids: list[str]) -> None:
    records = read_rewards(s)
    assert [r.outbox_id for r in records] == ids  # each once, in stream order


class Running:
    """A relay as a task of this test's event loop."""

    def __init__(self, relay: RewardRelay, owns=lambda: True) -> None:
        self.relay = relay
        self.task = asyncio.create_task(relay.run(owns))

    async def stop(self) -> None:
        await self.relay.stop()
        assert self.task.done()


def async_redis(s: CountersSettings) -> aioredis.Redis:
    return aioredis.Redis.from_url(s.redis_url, decode_responses=True, socket_timeout=2.0)


async def test_entries_become_records_once_with_their_events(settings, redis_client) -> None:
    s = settings
    ids = add_entries(redis_client, s, range(0, 40))
    aredis = async_redis(s)
    running = Running(RewardRelay(s, aredis))
    await published(redis_client, s, ids[-1], "the first entries published", 15)
    more = add_entries(redis_client, s, range(40, 55))  # while it runs
    await published(redis_client, s, more[-1], "later entries published", 15)
    status = running.relay.status()
    assert status["state"] == "relaying" and status["pending"] == 0 and status["lag_s"] == 0
    await running.stop()

    records = await asyncio.to_thread(read_rewards, s)
    assert [r.outbox_id for r in records] == ids + more
    for n, record in enumerate(records):
        fields = entry_fields(n)
        event = record.event
        assert record.key == fields["reward"] == event.payload.reward_id
        assert event.event_id == uuid.uuid5(
            REWARD_EVENT_NAMESPACE, f"{fields['reward']}#{fields['seq']}"
        )
        assert event.occurred_at == datetime.fromtimestamp(int(fields["ts"]) / 1000, UTC)
        assert event.producer == "social-processor"
        assert (
            event.payload.promotion_id,
            event.payload.user_id,
            event.payload.role,
            event.payload.coupon,
        ) == (fields["P"], fields["u"], fields["role"], fields["coupon"])
        if fields["type"] == "earned":
            assert isinstance(event, RewardEarned)
            assert (
                event.payload.reward.kind == "percent" and str(event.payload.reward.value) == "10"
            )
            assert event.payload.reward.currency is None
            assert event.payload.buyers == int(fields["buyers"])
        else:
            assert isinstance(event, RewardWithdrawn) and event.payload.reason == "refunded"
        assert record.headers["event_id"] == str(event.event_id)
    # checkpoint = the last entry and the topic's end after it; the stream trimmed
    assert checkpoint(redis_client, s) == {"id": more[-1], "offset": str(records[-1].offset + 1)}
    assert redis_client.xlen(Keys(s.redis_namespace).rewards_outbox) == 0

    # a restart (clean, this time) recovers its position and publishes nothing again
    running = Running(RewardRelay(s, aredis))
    await relay_state(running.relay, "relaying", "the relay to recover", 15)
    last = add_entries(redis_client, s, range(55, 56))
    await published(redis_client, s, last[-1], "an entry after the restart", 15)
    await running.stop()
    await aredis.aclose()
    await asyncio.to_thread(assert_published_once, s, ids + more + last)


async def test_an_entry_that_makes_no_event_is_logged_and_passed_over(
    settings, redis_client, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer bug must not stall every later reward: the entry is logged with its fields."""
    s = settings
    before = add_entries(redis_client, s, range(0, 2))
    broken = {**entry_fields(2), "coupon": "not-a-coupon"}
    bad = redis_client.xadd(Keys(s.redis_namespace).rewards_outbox, broken)
    after = add_entries(redis_client, s, range(3, 5))
    aredis = async_redis(s)
    invalid = relay_module.RELAY_INVALID._value.get()
    running = Running(RewardRelay(s, aredis))
    await published(redis_client, s, after[-1], "the entries around the broken one")
    await running.stop()
    await aredis.aclose()
    await asyncio.to_thread(assert_published_once, s, before + after)
    assert relay_module.RELAY_INVALID._value.get() == invalid + 1
    assert any(getattr(r, "entry_id", None) == bad for r in caplog.records)


async def test_on_a_redis_cluster_the_outbox_is_beside_the_referrals_shard(
    backend: Backend,
    redis_cluster,  # noqa: F811
) -> None:
    """With the cluster client (what the worker connects to a cluster node), the relay reads the
    outbox where the store's script appends it, ``{base}:{rw}`` (contracts.layout.outbox_prefix),
    and checkpoints and trims there."""
    s = relay_settings(backend.bootstrap, redis_cluster.url)
    prefix = outbox_prefix(s.redis_namespace, cluster=True)
    outbox, checkpoint_key = f"{prefix}:rewards:outbox", f"{prefix}:rewards:relay"
    sync = redis_sync.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    aredis = await connect_store(s)
    try:
        assert isinstance(aredis, AsyncRedisCluster)
        ids = [sync.xadd(outbox, entry_fields(n)) for n in range(6)]
        running = Running(RewardRelay(s, aredis))

        async def done() -> bool:
            return (await aredis.hgetall(checkpoint_key)).get("id") == ids[-1]

        await wait_for_async(done, 20, "the cluster's outbox published and checkpointed")
        await running.stop()
        await asyncio.to_thread(assert_published_once, s, ids)
        assert sync.xlen(outbox) == 0  # trimmed
    finally:
        for key in (outbox, checkpoint_key):
            sync.delete(key)
        sync.close()
        await aredis.aclose()
        _cleanup(s)  # its topics (the keys are on the cluster, deleted above)


def test_a_crash_between_commit_and_checkpoint_publishes_nothing_twice(
    settings, redis_client, tmp_path: Path
) -> None:
    s = settings
    first = add_entries(redis_client, s, range(0, 10))
    # the second commit kills the process (SIGKILL to itself) before its checkpoint
    crashing = RelayProcess(s, tmp_path, crash_after=2).start()
    try:
        wait_for(
            lambda: checkpointed(redis_client, s, first[-1]),
            20,
            "the first transaction checkpointed",
        )
        second = add_entries(redis_client, s, range(10, 25))
        wait_for(lambda: crashing.exited() is not None, 20, "the relay to kill itself")
        assert crashing.exited() == -9
    finally:
        crashing.stop()
    # the second transaction is committed, its checkpoint never written, its entries not trimmed
    assert_published_once(s, first + second)
    assert checkpoint(redis_client, s)["id"] == first[-1]
    outbox = Keys(s.redis_namespace).rewards_outbox
    assert [i for i, _ in redis_client.xrange(outbox)] == second

    third = add_entries(redis_client, s, range(25, 30))
    restarted = RelayProcess(s, tmp_path).start()
    try:
        wait_for(
            lambda: checkpointed(redis_client, s, third[-1]),
            20,
            "the restarted relay to publish the new entries",
        )
    finally:
        restarted.stop()
    assert_published_once(s, first + second + third)
    assert redis_client.xlen(outbox) == 0
    assert "recovered its position from the topic" in restarted.log.read_text()


class StallingRelay(RewardRelay):
    """A relay that has sent its transaction's records and stalls before committing (a GC
    pause, a network partition): the zombie."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stalled = threading.Event()
        self.release = threading.Event()

    def _commit(self, producer) -> None:
        producer.flush(10)  # the records are in the log, their transaction still open
        self.stalled.set()
        self.release.wait(30)
        super()._commit(producer)


async def test_a_fenced_zombie_never_becomes_visible(settings, redis_client) -> None:
    s = settings
    ids = add_entries(redis_client, s, range(0, 12))
    aredis = async_redis(s)
    zombie = StallingRelay(s, aredis)
    zombie_running = Running(zombie, owns=lambda: not zombie.release.is_set())
    await asyncio.to_thread(zombie.stalled.wait, 15)
    assert zombie.stalled.is_set(), "the zombie never got to its commit"

    # a second relay with the same transactional.id (a rebalance's new owner) fences it
    successor = Running(RewardRelay(s, aredis))
    assert successor.relay.transactional_id == zombie.transactional_id
    await published(redis_client, s, ids[-1], "the successor to publish", 20)
    zombie.release.set()
    await relay_state(zombie, "standby", "the zombie's commit to fail, then it to stand by")
    assert "fenced" in zombie.last_error.lower()
    await zombie_running.stop()

    # still relaying for the successor: later entries go out once
    later = add_entries(redis_client, s, range(12, 15))
    await published(redis_client, s, later[-1], "later entries", 20)
    await successor.stop()
    await aredis.aclose()
    await asyncio.to_thread(assert_published_once, s, ids + later)
    # the zombie's records did reach the log, in a transaction that was aborted
    everything = await asyncio.to_thread(read_rewards, s, "read_uncommitted")
    assert [r.outbox_id for r in everything] == ids + ids + later


class RedisKillingRelay(RewardRelay):
    """Stops Redis right after its first commit: the checkpoint cannot be written."""

    redis_proc: ManagedProcess

    def _commit(self, producer) -> None:
        super()._commit(producer)
        if self.redis_proc.running:
            self.redis_proc.stop()


async def test_redis_down_after_a_commit_then_back(backend: Backend, tmp_path: Path) -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    redis_proc = redis_server(
        port, tmp_path / "redis", echo=False, log_path=tmp_path / "redis.log"
    ).start()
    s = relay_settings(backend.bootstrap, redis_url)
    try:
        await asyncio.to_thread(wait_for_redis, redis_url)
        sync = redis_sync.Redis.from_url(redis_url, decode_responses=True)
        ids = add_entries(sync, s, range(0, 20))
        aredis = async_redis(s)
        relay = RedisKillingRelay(s, aredis)
        relay.redis_proc = redis_proc
        running = Running(relay)
        # committed, then Redis went away (stopped cleanly: its append-only file keeps the stream)
        await relay_state(relay, "retrying", "the relay to notice Redis is gone", 20)
        assert not redis_proc.running
        redis_proc = redis_server(
            port, tmp_path / "redis", echo=False, log_path=tmp_path / "redis.log"
        ).start()
        await asyncio.to_thread(wait_for_redis, redis_url)
        await published(sync, s, ids[-1], "the relay to recover once Redis is back", 30)
        later = add_entries(sync, s, range(20, 25))
        await published(sync, s, later[-1], "entries added after the outage", 15)
        await running.stop()
        await aredis.aclose()
        await asyncio.to_thread(assert_published_once, s, ids + later)
        sync.close()
    finally:
        redis_proc.stop()
        _cleanup(s)


async def test_entries_written_while_the_broker_is_down_go_out_once_it_is_back(
    backend: Backend, redis_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "BACKOFF_MAX_S", 1.0)  # back soon after the broker is
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"

    def start_broker() -> ManagedProcess:
        proc = embedded_broker(
            port, tmp_path / "kafka", echo=False, log_path=tmp_path / "broker.log"
        ).start()
        wait_for_broker(bootstrap, proc=proc)
        return proc

    broker = await asyncio.to_thread(start_broker)
    try:
        s = relay_settings(bootstrap, backend.redis_url)
        s = s.model_copy(update={"produce_timeout_ms": 1000})  # fail fast while it is down
        ids = add_entries(redis_client, s, range(0, 10))
        aredis = async_redis(s)
        running = Running(RewardRelay(s, aredis))
        await published(redis_client, s, ids[-1], "entries published", 20)
        await asyncio.to_thread(broker.stop)  # SIGTERM: a broker going away (restart, upgrade)
        during = add_entries(redis_client, s, range(10, 30))
        await relay_state(
            running.relay, "retrying", "the relay to fail while the broker is down", 20
        )
        assert running.relay.status()["last_error"]
        broker = await asyncio.to_thread(start_broker)
        await published(
            redis_client, s, during[-1], "the pending entries once the broker is back", 40
        )
        await running.stop()
        await aredis.aclose()
        await asyncio.to_thread(assert_published_once, s, ids + during)
    finally:
        broker.stop()
        keys = list(redis_client.scan_iter(f"{s.redis_namespace}:*"))
        if keys:
            redis_client.delete(*keys)


def test_only_partition_zero_of_orders_relays() -> None:
    from aiokafka import TopicPartition

    s = CountersSettings(kafka_topic_prefix="x.")
    assert owns_partition_zero({TopicPartition("x.orders.events", 0)}, s)
    assert not owns_partition_zero(
        {TopicPartition("x.orders.events", 1), TopicPartition("x.social.shares", 0)}, s
    )
    assert not owns_partition_zero({TopicPartition("orders.events", 0)}, s)
    assert not owns_partition_zero(set(), s)


def test_the_worker_relays_as_a_task(settings, redis_client, tmp_path: Path) -> None:
    """A real worker process: it holds every partition (alone in its group), so it relays;
    /readyz says so; SIGTERM stops it cleanly."""
    from socialproof.kafka import ensure_topics
    from tests.support.relays import settings_env
    from tools.devstack import LOCAL_ENV, wait_worker_assigned

    s = settings
    ensure_topics(s)  # every topic the worker subscribes to, under the test's prefix
    port = free_port()
    worker = ManagedProcess(
        "worker",
        worker_argv(),
        env={**LOCAL_ENV, **settings_env(s), "SOCIALPROOF_WORKER_WEB_PORT": str(port)},
        echo=False,
        log_path=tmp_path / "worker.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}/readyz"
        wait_worker_assigned(url, 60, worker)
        ids = add_entries(redis_client, s, range(0, 5))
        wait_for(lambda: checkpointed(redis_client, s, ids[-1]), 20, "the worker's relay")
        relay = httpx.get(url, timeout=2).json()["reward_relay"]
        assert relay["state"] == "relaying" and relay["published_id"] == ids[-1]
        assert relay["pending"] == 0
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()
    assert_published_once(s, ids)
    wait_until(
        lambda: "reward relay stopped" in (tmp_path / "worker.log").read_text(),
        5,
        "the relay's stop in the log",
    )
