"""The stream worker on a Redis Cluster (issue #16): ``socialproof worker`` with ``REDIS_URL``
naming one node of the session's cluster finds the cluster by itself and writes exactly what the
counter store writes there. A master killed under the worker is tests/reliability/
test_cluster_failover.py (orders flowing, each counted once) and test_cluster_replication.py (no
batch committed before a replica has it); an earlier test here (a master killed under an
in-process consumer with a 0.5 s client deadline: 6-9 failed attempts retried whole, all
committed 4.3-5.0 s after the kill) was folded into those for the suite's time.

The events come from the session's broker under a topic prefix of the test's own; the state is
compared, key for key on every node, with the same events applied by a
:class:`~services.counters.store.CounterStore` to another namespace of the same cluster.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import redis as redis_sync
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts import events as ev
from contracts import namespaces
from contracts.layout import CLUSTER_SHARDS, StoreLayout, layout_field, outbox_prefix
from contracts.topics import PROCESSOR_TOPICS
from ops import topics as topic_ops
from ops.rebuild import connect, drop_namespace, group_offsets
from services.counters.settings import CountersSettings
from services.counters.store import CounterStore
from socialproof.kafka import ensure_topics, topic_name
from socialproof.redis import cluster_retry
from socialproof.settings import Settings
from tests.integration.test_processor_support import first_difference, publish, start_worker
from tests.support.rediscluster import ClusterUnderTest
from tests.support.stores import StoreUnderTest
from tests.support.waiting import wait_for_async
from tools.loadgen import LoadConfig, LoadGenerator

#: a replica takes over 3.6-4.9 s after its master's SIGKILL (tools/rediscluster.py)
PROMOTION_DEADLINE_S = 20.0


def history(tag: str, activity: int) -> list[ev.Event]:
    """Names, consent, friendships, then purchases, refunds, reviews, shares, Q&A ... and an
    erasure, with producer-side duplicates."""
    gen = LoadGenerator(
        LoadConfig(seed=16, users=40, products=10, mean_friends=6, span_hours=20, id_prefix=tag)
    )
    events = [*gen.setup_events(), *gen.activity_events(activity), *gen.erase_events(1)]
    return events + events[50:90]


def cluster_settings(settings: Settings, url: str, tag: str) -> CountersSettings:
    s = CountersSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        redis_url=url,
        kafka_topic_prefix=f"pc-{tag}.",
        redis_namespace=f"pc{tag}",
        worker_consumer_group=f"pc-{tag}",
    )
    ensure_topics(s)  # every topic: the worker's reward relay reads promotions.rewards too
    return s


def under_test(url: str, namespace: str) -> StoreUnderTest:
    client = AsyncRedisCluster.from_url(url, decode_responses=True, retry=cluster_retry())
    sync = redis_sync.RedisCluster.from_url(url, decode_responses=True)
    return StoreUnderTest("cluster", url, client, sync, StoreLayout(namespace, CLUSTER_SHARDS))


async def reference(store: StoreUnderTest, events: list[ev.Event]) -> dict[str, object]:
    """The events applied by the counter store itself, in the cluster's default layout."""
    layout = store.fresh()
    await CounterStore(store.redis, layout.namespace).apply(events)
    return store.dump(layout.namespace)


def committed(s: CountersSettings) -> int:
    return sum(group_offsets(s, s.worker_consumer_group).values())


def end_of_topics(s: CountersSettings) -> int:
    return sum(
        sum(topic_ops.true_end_offsets(s, topic_name(s, t)).values()) for t in PROCESSOR_TOPICS
    )


def delete_topics(s: CountersSettings) -> None:
    admin = topic_ops.admin(s)
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(s.kafka_topic_prefix)]
    for future in admin.delete_topics(names, operation_timeout=10).values():
        future.exception()  # best effort: the next session's prefixes differ anyway


async def test_a_worker_given_a_cluster_node_writes_what_the_store_writes(
    settings: Settings,
    redis_cluster: ClusterUnderTest,  # noqa: F811
) -> None:
    tag = uuid.uuid4().hex[:8]
    s = cluster_settings(settings, redis_cluster.url, tag)
    store = under_test(redis_cluster.url, s.redis_namespace)
    events = history(f"{tag}-", 300)
    worker = None
    try:
        # Given a real worker whose REDIS_URL names one node of a cluster, nothing else
        worker = start_worker(s, s.redis_namespace, s.worker_consumer_group)
        ready = httpx.get(f"{worker.url}/readyz", timeout=5).json()
        assert ready["checks"]["redis"] == "ok", ready
        # When the events are published
        await publish(s, events, concurrently=True)
        end = await asyncio.to_thread(end_of_topics, s)
        await wait_for_async(
            lambda: asyncio.to_thread(lambda: committed(s) >= end),
            60,
            "the worker to commit every event",
        )
        # Then it recorded the cluster's layout and wrote every shard as the store does
        pointer = store.sync.hgetall(namespaces.pointer_key(s.redis_namespace))
        assert pointer[layout_field(s.redis_namespace)] == str(CLUSTER_SHARDS)
        written = store.dump()
        expected = await reference(store, events)
        assert len(written) > 1000, "too little state to compare"
        assert written == expected, first_difference(written, expected)
        masters = {
            store.sync.get_node_from_key(f"{prefix}:erased").name
            for prefix in store.layout.prefixes
        }
        assert len(masters) == 3, f"the shards are not spread over the masters: {masters}"
        # And `replay drop` of it visits every master and deletes per slot, keeping what
        # outlives the base namespace (its rewards outbox)
        worker.stop()
        outbox = f"{outbox_prefix(s.redis_namespace, True)}:rewards:outbox"
        store.sync.xadd(outbox, {"kept": "1"})
        client = connect(s)
        try:
            deleted = drop_namespace(client, s.redis_namespace, base=s.redis_namespace)
        finally:
            client.close()
        assert deleted == len(written)
        assert list(store.dump()) == ["{rw}:rewards:outbox"]
    finally:
        if worker is not None:
            worker.stop()
        store.drop()
        await store.redis.aclose()
        store.sync.close()
        await asyncio.to_thread(delete_topics, s)
