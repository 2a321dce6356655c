"""Replicas: two workers splitting the partitions, one of them crashing mid-stream (its
uncommitted batches are redelivered to the other), end with exactly the same Redis state as a
single worker on the same input, and that state matches the oracle; on the session's single
Redis (one shard) and on its Redis Cluster (12 shards over 3 masters, #16), where each shard's
friends_bought fan-out must hold on its own. Measured (2 shared cores, load 3-5): 17-19 s on one
Redis, 23-27 s on the cluster (its start aside).

The workers read topics under a prefix of their own: on the session's topics their new groups
replayed every earlier test's events too (31.5 s in the suite against 12 s alone once the badge
experiments' end-to-end test had added ~10,000 events)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts import namespaces
from contracts.layout import CLUSTER_SHARDS
from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader, to_json
from socialproof.redis import cluster_retry
from socialproof.settings import Settings
from tests.integration.test_processor_support import (
    dump,
    fanout_errors,
    first_difference,
    publish,
    start_worker,
)
from tools.loadgen import LoadConfig, LoadGenerator

FANOUT_AT = 5


def assigned(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).json().get("assigned_partitions", 0)
    except httpx.HTTPError:
        return 0


async def matches_oracle(reader: ProofReader, oracle: Oracle, gen: LoadGenerator) -> bool:
    now = int(gen.anchor.timestamp() * 1000)
    for product in gen.product_ids:
        got = to_json(await reader.read(product, now_ms=now))
        got.pop("as_of")
        if got != oracle.proof(product, now):
            return False
    for viewer in gen.user_ids:
        count, _ = await reader.friends_bought(viewer, gen.product_ids[0])
        if count != len(oracle.friends_who_bought(viewer, gen.product_ids[0])):
            return False
    return True


def by_shard(state: dict[str, object]) -> dict[str, dict[str, object]]:
    """A sharded namespace's ``dump`` split by shard (``{tag}:rest`` -> ``{tag}: {rest: ...}``);
    one shard's dump is its own only shard, ``""``."""
    shards: dict[str, dict[str, object]] = {}
    for key, value in state.items():
        tag, sep, rest = key.partition("}:")
        if key.startswith("{") and sep:
            shards.setdefault(tag + "}", {})[rest] = value
        else:
            shards.setdefault("", {})[key] = value
    return shards


@pytest.mark.parametrize("deployment", ["one-redis", "cluster"])
async def test_two_workers_with_a_crash_end_in_the_same_state_as_one(
    own_topics: Settings,
    redis_client: redis_sync.Redis,
    deployment: str,
    request: pytest.FixtureRequest,
) -> None:
    settings = own_topics
    shards = 1
    inspect: redis_sync.Redis | redis_sync.RedisCluster = redis_client
    if deployment == "cluster":  # the workers find the cluster from REDIS_URL alone
        url = request.getfixturevalue("redis_cluster").url
        settings = settings.model_copy(update={"redis_url": url})
        shards = CLUSTER_SHARDS
        inspect = redis_sync.RedisCluster.from_url(url, decode_responses=True)
    run = uuid.uuid4().hex[:8]
    gen = LoadGenerator(
        LoadConfig(seed=5, users=30, products=6, mean_friends=6, id_prefix=f"w{run}-")
    )
    events = list(gen.setup_events()) + list(gen.activity_events(600)) + gen.erase_events(2)
    rng = random.Random(run)
    rng.shuffle(events)
    oracle = Oracle(events)
    ns_one, ns_two = f"one{run}", f"two{run}"
    # Given one worker in its own group and two workers sharing another group, all fanning out
    # friends_bought for viewers with 5 friendships or more (some of these users, not all)
    fanout = {"SOCIALPROOF_WORKER_FRIENDS_FANOUT_AT": str(FANOUT_AT)}
    workers = [
        start_worker(settings, ns_one, f"g-one-{run}", "solo", wait=False, extra_env=fanout),
        start_worker(settings, ns_two, f"g-two-{run}", "pair-a", wait=False, extra_env=fanout),
        start_worker(settings, ns_two, f"g-two-{run}", "pair-b", wait=False, extra_env=fanout),
    ]
    solo, pair_a, pair_b = workers
    redis: aioredis.Redis | AsyncRedisCluster = (
        AsyncRedisCluster.from_url(settings.redis_url, decode_responses=True, retry=cluster_retry())
        if shards > 1
        else aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    )
    try:
        deadline = time.monotonic() + 90
        while not all(assigned(w.url) > 0 for w in workers):
            for w in workers:
                w.proc.ensure_alive()
            assert time.monotonic() < deadline, "workers did not all get partitions"
            await asyncio.sleep(0.2)
        # When the first half of the events arrives, then one of the pair crashes (SIGKILL),
        # then the second half arrives
        half = len(events) // 2
        await publish(settings, events[:half], concurrently=True)
        await asyncio.sleep(0.3)  # let the pair be mid-stream, not idle, when one dies
        pair_a.proc.kill()
        await publish(settings, events[half:], concurrently=True)
        # Then both namespaces converge to the oracle and to each other, key for key
        readers = [ProofReader(redis, ns, shards=shards) for ns in (ns_one, ns_two)]
        deadline = time.monotonic() + 90
        while True:
            ok = all([await matches_oracle(r, oracle, gen) for r in readers])
            a, b = dump(inspect, ns_one), dump(inspect, ns_two)
            if ok and a == b:
                break
            solo.proc.ensure_alive()
            pair_b.proc.ensure_alive()
            assert time.monotonic() < deadline, (
                f"no convergence: oracle={ok}, first difference: {first_difference(a, b)}"
            )
            await asyncio.sleep(0.5)
        # And the fan-out in it is exactly what the facts say, for the viewers above the
        # threshold, in every shard (each has the user facts and its products' buyers)
        in_shards = by_shard(a)
        assert len(in_shards) == (shards + 1 if shards > 1 else 1), sorted(in_shards)
        for tag, state in in_shards.items():
            assert fanout_errors(state, FANOUT_AT) == [] and state.get("fanout"), tag
    finally:
        await redis.aclose()
        for w in workers:
            w.stop()
        for ns in (ns_one, ns_two):
            keys = list(inspect.scan_iter(f"{ns}:*", count=1000))
            if shards > 1:  # one by one: a cluster refuses a DEL of keys of several slots
                for key in keys:
                    inspect.delete(key)
            else:
                for start in range(0, len(keys), 1000):
                    inspect.delete(*keys[start : start + 1000])
            inspect.delete(namespaces.pointer_key(ns))  # the shard count the first worker wrote
        if inspect is not redis_client:
            inspect.close()
