"""A real Redis Cluster (tools/rediscluster.py) and the store client that finds it
(socialproof.redis.connect_store), for issue #16: the cluster forms as the processor will need
it, the client tells a cluster from a single node, spreads keys over every master, and rides
through a master's SIGKILL: the replica takes over, acknowledged writes survive, a write sent
during the failover lands after retries, and one whose deadline passes raises instead.

Measured on this machine (2 shared cores, load 0.5-1.2, 4 runs): the whole file takes 16.5-18.7 s
wall (pytest's 13.7-16.4 s), of which the cluster's start is 2.2-4.2 s, the session's single node
(Kafka and Redis, for the ``is_cluster`` test) about 1.6 s, and each of the two failover tests
4.7-5.3 s (the replica took over 3.3-4.1 s after the kill; the write sent at the kill was done
3.3-4.2 s after it; the impatient write raised after 0.7 s). With
``SOCIALPROOF_TEST_REDIS_CLUSTER_URL`` naming a running cluster: 2 s, the two failover tests
skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisError

from socialproof.redis import connect_store, is_cluster
from socialproof.settings import Settings
from tests.support.rediscluster import ClusterUnderTest
from tools.rediscluster import SLOTS, ClusterView

#: how long a test waits for a replica to take over (3.6-4.9 s here with a 2 s node timeout)
PROMOTION_DEADLINE_S = 20.0


async def cluster_client(
    cluster: ClusterUnderTest, failover_deadline: float = PROMOTION_DEADLINE_S
) -> AsyncRedisCluster:
    client = await connect_store(
        Settings(redis_url=cluster.url), failover_deadline=failover_deadline
    )
    assert isinstance(client, AsyncRedisCluster), f"{cluster.url} was not seen as a cluster"
    await client.initialize()  # the slot map, for get_node_from_key
    return client


@pytest.fixture
async def store(redis_cluster: ClusterUnderTest) -> AsyncIterator[AsyncRedisCluster]:  # noqa: F811
    client = await cluster_client(redis_cluster)
    yield client
    await client.aclose()


def test_the_cluster_has_three_masters_each_with_one_replica_and_every_slot(
    redis_cluster: ClusterUnderTest,  # noqa: F811
) -> None:
    # Given the cluster the fixture started (or the one the environment names)
    with redis_sync.Redis.from_url(redis_cluster.url, decode_responses=True) as node:
        # When one of its nodes is asked what it knows
        info = node.execute_command("CLUSTER", "INFO")
        view = ClusterView.parse(node.execute_command("CLUSTER", "NODES"))
    # Then the cluster is ok, with three masters that together serve all 16384 slots once
    assert "cluster_state:ok" in info
    serving = {i: ranges for i, ranges in view.masters.items() if ranges}
    assert len(serving) == 3, view
    served = sorted(s for ranges in serving.values() for first, last in ranges
                    for s in range(first, last + 1))  # fmt: skip
    assert served == list(range(SLOTS))
    # And each master has exactly one replica, and nobody is failed
    replicas = list(view.replica_of.values())
    assert sorted(replicas) == sorted(serving), view.replica_of
    assert not view.failed


async def test_is_cluster_tells_a_cluster_node_from_the_single_node(
    redis_cluster: ClusterUnderTest,  # noqa: F811
    settings: Settings,
) -> None:
    # Given a cluster node and the suite's single Redis node
    # When each is asked
    # Then only the cluster node says it is one
    assert await is_cluster(redis_cluster.url) is True
    assert await is_cluster(settings.redis_url) is False
    # And connect_store gives the single node the same plain client as connect()
    plain = await connect_store(settings)
    try:
        assert type(plain) is aioredis.Redis
        assert await plain.ping()
    finally:
        await plain.aclose()


async def test_connect_store_refuses_a_cluster_url_naming_another_database(
    redis_cluster: ClusterUnderTest,  # noqa: F811
) -> None:
    # Given a cluster node's URL ending in /3 (a cluster has database 0 only)
    url = redis_cluster.url.rsplit("/", 1)[0] + "/3"
    # When the store client is asked for
    # Then it refuses at once, saying how to fix the URL
    with pytest.raises(ValueError, match="end the URL with /0"):
        await connect_store(Settings(redis_url=url))


async def test_connect_store_writes_and_reads_keys_on_every_master(
    store: AsyncRedisCluster,
) -> None:
    # Given keys chosen so that each of the three masters serves at least one
    keys_by_node: dict[str, str] = {}
    for i in range(1000):
        key = f"spread:{i}"
        keys_by_node.setdefault(store.get_node_from_key(key).name, key)
        if len(keys_by_node) == 3:
            break
    assert len(keys_by_node) == 3, keys_by_node
    # When each is written and read through the one cluster client
    for node_name, key in keys_by_node.items():
        assert await store.set(key, f"on {node_name}") is True
    read = {name: await store.get(key) for name, key in keys_by_node.items()}
    # Then every value reads back, and each is stored on the master its slot maps to
    assert read == {name: f"on {name}" for name in keys_by_node}
    for node_name, key in keys_by_node.items():
        host, port = node_name.rsplit(":", 1)
        async with aioredis.Redis(host=host, port=int(port), decode_responses=True) as node:
            assert await node.get(key) == f"on {node_name}", f"{key} is not on {node_name}"
    await store.delete(*keys_by_node.values())


async def test_a_killed_masters_replica_takes_over_and_no_acknowledged_write_is_lost(
    redis_cluster: ClusterUnderTest,  # noqa: F811
    store: AsyncRedisCluster,
) -> None:
    cluster = redis_cluster.require_local()
    acked_key, during_key = "{failover}:acked", "{failover}:during"  # one slot, one master
    # Given a key whose last value its master's replica has acknowledged (WAIT 1)
    await store.set(acked_key, "first")
    await store.set(acked_key, "last acked")
    acked_by = await store.execute_command(
        "WAIT", 1, 2000, target_nodes=store.get_node_from_key(acked_key)
    )
    assert acked_by >= 1, "the replica did not acknowledge the write within 2 s"
    victim = cluster.master_for(acked_key)
    its_replicas = cluster.replicas_of(victim)
    try:
        # When its master is SIGKILLed and a write to the same slot is sent at once
        killed_at = time.monotonic()
        cluster.kill(victim)
        write = asyncio.create_task(store.set(during_key, "written during the failover"))
        promoted = await asyncio.to_thread(cluster.wait_promoted, victim, PROMOTION_DEADLINE_S)
        promotion_s = time.monotonic() - killed_at
        # Then its replica serves the slot, within the deadline
        assert promoted in its_replicas
        assert promotion_s < PROMOTION_DEADLINE_S
        # And the write sent during the failover succeeded after the client's retries
        assert await asyncio.wait_for(write, PROMOTION_DEADLINE_S) is True
        write_s = time.monotonic() - killed_at
        # And through the same client both values read back from the promoted replica
        assert await store.get(acked_key) == "last acked"
        assert await store.get(during_key) == "written during the failover"
        assert store.get_node_from_key(acked_key).port == promoted.port
        print(f"\npromoted after {promotion_s:.1f}s, the write done after {write_s:.1f}s")
    finally:
        if not victim.running:  # back as a replica of its successor, for the tests after this
            cluster.restart(victim)
    await store.delete(acked_key, during_key)


async def test_a_write_whose_failover_deadline_passes_raises_and_is_not_applied(
    redis_cluster: ClusterUnderTest,  # noqa: F811
) -> None:
    cluster = redis_cluster.require_local()
    key = "{short-deadline}:k"
    # Given a client that retries for 0.5 s only, and a key it wrote
    impatient = await cluster_client(redis_cluster, failover_deadline=0.5)
    await impatient.set(key, "before")
    victim = cluster.master_for(key)
    try:
        # When the key's master is SIGKILLed and the key is written at once, long before a
        # replica can take over (the node timeout alone is 2 s)
        cluster.kill(victim)
        started = time.monotonic()
        with pytest.raises(RedisError) as raised:
            await impatient.set(key, "after")
        failed_after_s = time.monotonic() - started
        # Then the write raised within a few seconds, naming the node it could not reach
        assert failed_after_s < 5.0, f"the write took {failed_after_s:.1f}s to fail"
        assert str(victim.port) in str(raised.value), raised.value
        # And once a replica took over, the key still holds its old value: nothing was applied
        await asyncio.to_thread(cluster.wait_promoted, victim, PROMOTION_DEADLINE_S)
        async with AsyncRedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", cluster.masters()[0].port)],
            decode_responses=True,
        ) as fresh:
            assert await fresh.get(key) == "before"
            await fresh.delete(key)
        print(
            f"\nraised after {failed_after_s:.2f}s: {type(raised.value).__name__}: {raised.value}"
        )
    finally:
        await impatient.aclose()
        if not victim.running:
            cluster.restart(victim)
