"""The ``store`` fixture: one serving-store deployment per parameter, for tests that must hold on
every layout of issue #16 (contracts/layout.py):

- ``one``: the session's single Redis, one shard (today's keys, the default of ``make run``);
- ``sharded``: the same Redis with 4 shards (the sharded router and readers, on one node);
- ``cluster``: the session's Redis Cluster (:mod:`tests.support.rediscluster`, 3 masters + 3
  replicas) with :data:`contracts.layout.CLUSTER_SHARDS` shards, through redis-py's cluster
  client as the services use it (``socialproof.redis.connect_store``).

Each test gets a fresh namespace whose shard count is recorded beside its pointer, as the first
worker records it; everything under it (on every node) and the pointer are deleted after.

``tests/conftest.py`` imports ``store`` and ``redis_cluster`` once for every module (a module
importing them itself would start its own cluster).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts import namespaces
from contracts.layout import CLUSTER_SHARDS, StoreLayout, layout_field
from socialproof.redis import cluster_retry

#: the deployments ``store`` is parametrised over
STORE_KINDS = ("one", "sharded", "cluster")
#: shards of the ``sharded`` deployment on one Redis
SHARDED_ON_ONE = 4


@dataclass
class StoreUnderTest:
    kind: str
    url: str
    redis: aioredis.Redis | AsyncRedisCluster  # what the services use
    sync: redis_sync.Redis | redis_sync.RedisCluster  # for inspection
    layout: StoreLayout

    @property
    def namespace(self) -> str:
        return self.layout.namespace

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"

    def fresh(self) -> StoreLayout:
        """Another empty namespace with the same shard count (for comparisons), recorded and
        deleted with this one."""
        layout = StoreLayout(f"{self.namespace}x{len(self._extra)}", self.layout.shards)
        self.sync.hset(
            namespaces.pointer_key(layout.namespace), layout_field(layout.namespace), layout.shards
        )
        self._extra.append(layout.namespace)
        return layout

    def __post_init__(self) -> None:
        self._extra: list[str] = []

    def dump(self, namespace: str | None = None) -> dict[str, object]:
        """Every key of a namespace (every shard, every node) with its value, keyed by the key
        without the namespace (shard tags stay), for state comparisons."""
        return dump_namespace(self.sync, namespace or self.namespace)

    def drop(self) -> None:
        for ns in (self.namespace, *self._extra):
            # one UNLINK per key, pipelined (per node on a cluster, which refuses a multi-slot
            # UNLINK)
            pipe = self.sync.pipeline(transaction=False)
            for key in self.sync.scan_iter(f"{ns}:*", count=1000):
                pipe.unlink(key)
            pipe.unlink(namespaces.pointer_key(ns))
            pipe.execute()


def dump_namespace(
    client: redis_sync.Redis | redis_sync.RedisCluster, namespace: str
) -> dict[str, object]:
    """Every key of a namespace with its value (TTLs aside), keyed by the key without the
    namespace: on a cluster client, over every master."""
    out: dict[str, object] = {}
    for key in client.scan_iter(f"{namespace}:*", count=1000):
        kind = client.type(key)
        short = key[len(namespace) + 1 :]
        if kind == "hash":
            out[short] = client.hgetall(key)
        elif kind == "set":
            out[short] = sorted(client.smembers(key))
        elif kind == "zset":
            out[short] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[short] = client.xlen(key)
        else:
            out[short] = client.get(key)
    return out


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StoreUnderTest]:
    kind = request.param
    if kind == "cluster":
        url = request.getfixturevalue("redis_cluster").url
        client = AsyncRedisCluster.from_url(url, decode_responses=True, retry=cluster_retry())
        sync: redis_sync.Redis | redis_sync.RedisCluster = redis_sync.RedisCluster.from_url(
            url, decode_responses=True
        )
        shards = CLUSTER_SHARDS
    else:
        url = request.getfixturevalue("settings").redis_url
        client = aioredis.Redis.from_url(url, decode_responses=True)
        sync = redis_sync.Redis.from_url(url, decode_responses=True)
        shards = 1 if kind == "one" else SHARDED_ON_ONE
    layout = StoreLayout(f"t{uuid.uuid4().hex[:10]}", shards)
    sync.hset(namespaces.pointer_key(layout.namespace), layout_field(layout.namespace), shards)
    under_test = StoreUnderTest(kind, url, client, sync, layout)
    try:
        yield under_test
    finally:
        under_test.drop()
        await client.aclose()
        sync.close()
