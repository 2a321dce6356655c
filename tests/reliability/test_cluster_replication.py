"""The stream worker commits a batch only once a replica has its writes (#16): Redis replicates
asynchronously, so a batch committed with its writes on the master alone would be lost for good
when that master dies (its replica promoted without them, the events never redelivered).

Recipe (deterministic): the replica of the master serving product p's shard is frozen (SIGSTOP)
and its replication link closed by the master (CLIENT KILL TYPE replica; a frozen replica alone
would still read what its socket buffered once continued); purchases of p are published and
applied by the worker (the first batch visible on the master), which must *not* commit them while no replica
acknowledges (``CounterStore.confirm_replicated``: ``WAIT 1`` per master); the master is
SIGKILLed, the replica continued and promoted; the worker's retried batch then lands on it and
every purchase is counted and committed. Before the replication wait, the worker committed the
batch and the promoted replica had 1 of the 6 buyers, every run.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition

from contracts import events as ev
from contracts.layout import CLUSTER_SHARDS, StoreLayout
from socialproof.redis import connect_store
from socialproof.settings import Settings
from tests.integration.test_processor_support import publish, start_worker
from tests.reliability.test_cluster_failover import PROMOTION_DEADLINE_S
from tests.support.rediscluster import ClusterUnderTest, drop_namespaces

pytestmark = pytest.mark.integration


def purchase(order: str, user: str, p: str) -> ev.Event:
    body = {
        "order_id": order,
        "user_id": user,
        "currency": "EUR",
        "lines": [{"product_id": p, "quantity": 1, "unit_price": "5.00"}],
    }
    return ev.PurchaseCompleted.create(body, producer="test", occurred_at=datetime.now(UTC))


def committed_past(settings: Settings, group: str, delivered) -> bool:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    try:
        parts = consumer.committed(
            [TopicPartition(d.topic, d.partition) for d in delivered], timeout=5
        )
    finally:
        consumer.close()
    done = {(t.topic, t.partition): t.offset for t in parts}
    return all(done.get((d.topic, d.partition), -1) > d.offset for d in delivered)


async def test_the_worker_commits_a_batch_only_once_a_replica_has_it(
    redis_cluster: ClusterUnderTest,
    own_topics: Settings,
) -> None:
    cluster = redis_cluster.require_local()
    tag = uuid.uuid4().hex[:8]
    namespace, group, p = f"lag{tag}", f"g-lag-{tag}", f"p{tag}"
    settings = own_topics.model_copy(update={"redis_url": cluster.url})
    layout = StoreLayout(namespace, CLUSTER_SHARDS)
    buyers = layout.product_keys(p).buyers(p)
    victim = cluster.master_for(buyers)
    replica = cluster.replicas_of(victim)[0]
    worker = start_worker(settings, namespace, group, "worker-lag")
    client = await connect_store(Settings(redis_url=cluster.url))
    try:
        first = await publish(settings, [purchase(f"o{tag}-0", "u0", p)])
        deadline = time.monotonic() + 30
        while await client.zcard(buyers) < 1 or not committed_past(settings, group, first):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # Given the replica of p's master cut off: frozen (SIGSTOP), and its replication link
        # closed by the master, so it receives nothing more (a frozen replica alone would still
        # read what its socket buffered once continued)
        assert replica.proc is not None
        replica.proc.signal(signal.SIGSTOP)
        with victim.client() as master:
            assert master.execute_command("CLIENT", "KILL", "TYPE", "replica") >= 1
        # When purchases of p are applied by the worker (on the master)
        delivered = await publish(
            settings, [purchase(f"o{tag}-{i}", f"u{i}", p) for i in range(1, 6)]
        )
        deadline = time.monotonic() + 30
        # (at least the first batch: the worker retries it, not fetching further, until a
        # replica acknowledges it)
        while await client.zcard(buyers) < 2:
            assert time.monotonic() < deadline, "the worker applied no purchase in 30 s"
            await asyncio.sleep(0.1)
        # Then they are not committed while no replica has them (longer than one of the batch's 2 s waits)
        hold = time.monotonic() + 2.5
        while time.monotonic() < hold:
            assert not committed_past(settings, group, delivered), "committed without a replica"
            await asyncio.sleep(0.5)
        # and the master dies, the replica goes on and is promoted
        cluster.kill(victim)
        replica.proc.signal(signal.SIGCONT)
        await asyncio.to_thread(cluster.wait_promoted, victim, PROMOTION_DEADLINE_S)
        cluster.restart(victim, PROMOTION_DEADLINE_S)
        # Then all six buyers are counted, and committed
        deadline = time.monotonic() + 30
        while (count := await client.zcard(buyers)) < 6 or not committed_past(
            settings, group, delivered
        ):
            assert time.monotonic() < deadline, f"{count} of 6 buyers 30 s after the failover"
            await asyncio.sleep(0.2)
    finally:
        if replica.proc is not None:
            replica.proc.signal(signal.SIGCONT)
        await client.aclose()
        worker.stop()
        if not victim.running:
            cluster.restart(victim, PROMOTION_DEADLINE_S)
        await asyncio.to_thread(drop_namespaces, cluster.url, namespace)
