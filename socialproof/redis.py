"""The Redis clients of the serving store (asyncio, pooled, with timeouts), on one Redis node or
on a Redis Cluster.

Redis holds derived views only: everything in it can be rebuilt from the Kafka topics.

:func:`connect_store` is the serving store's client (issue #16): it asks the node ``REDIS_URL``
names whether it is a cluster node (:func:`is_cluster`, one ``INFO cluster`` round trip) and
returns redis-py's public cluster client for a cluster, the plain client otherwise; no setting
says which. The stream worker and the reward relay (``services/counters``) connect through it
inside their event loop, and the key layout that lets their scripts run on a cluster (no script
touches two hash slots) is :mod:`contracts.layout`. :func:`connect_store_sync` is the same choice
for operations tools (``socialproof replay``: scans and drops of a namespace visit every master
and delete per slot, :mod:`ops.rebuild`). :func:`connect` stays the single-node client for code
that never talks to a cluster.

The cluster client retries on its own, through redis-py's options: MOVED and ASK redirects and
TRYAGAIN are followed within one attempt (up to 16 redirects), and a connection error, a timeout
or CLUSTERDOWN (a master died and its replica is not promoted yet) makes it refresh the slot map
and try again, spaced by an exponential backoff (100 ms doubling to at most 500 ms), with enough
attempts that the pauses add up to ``failover_deadline`` seconds (default 10 s: 22 retries; a
replica takes over 3.6-4.9 s after its master's SIGKILL with a 2 s ``cluster-node-timeout``, and
a write sent at the kill was done 4.2 s after it, measured in tests/integration/
test_redis_cluster.py). After that the command raises the last error, which names the node it
could not reach (with a 0.5 s deadline: ConnectionError after 0.7 s, the write not applied).
A command retried after a *timeout* may have been applied by the first attempt: the worker's
writes are idempotent facts, and a batch whose writes did not all succeed is retried whole with
its offsets uncommitted (``services/counters/app.py``; tests/integration/
test_processor_cluster.py kills a master under a worker).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from socialproof.settings import Settings

#: redis-py's ExponentialBackoff pauses min(cap, base * 2**failures): 0.1, 0.2, 0.4, 0.5, 0.5 ... s
CLUSTER_RETRY_BASE_S = 0.05
CLUSTER_RETRY_CAP_S = 0.5
#: how long a cluster command keeps retrying through a failover before it raises
DEFAULT_FAILOVER_DEADLINE_S = 10.0


def _client_options(**overrides: object) -> dict[str, object]:
    options: dict[str, object] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "decode_responses": True,
        "max_connections": 256,
    }
    options.update(overrides)
    return options


def connect(settings: Settings, **overrides: object) -> aioredis.Redis:
    """A pooled asyncio client. Timeouts are short so an outage becomes a 503, not a hang."""
    return aioredis.Redis.from_url(settings.redis_url, **_client_options(**overrides))


def _database_zero(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        # asked of database 0: a cluster node refuses to SELECT another, and INFO is server-wide
        return parts._replace(path="/0").geturl()
    return url


def _cluster_database(url: str) -> None:
    database = urlsplit(url).path.strip("/") or "0"
    if database != "0":
        raise ValueError(
            f"REDIS_URL={url} names database {database}, but a Redis Cluster has database 0 "
            "only: end the URL with /0 (or nothing)"
        )


async def is_cluster(url: str) -> bool:
    """Whether the node ``url`` names runs with ``cluster-enabled yes`` (``INFO cluster`` says
    ``cluster_enabled:1``). Raises redis-py's ConnectionError when nothing answers there."""
    client = aioredis.Redis.from_url(
        _database_zero(url), socket_timeout=2.0, socket_connect_timeout=2.0
    )
    try:
        info = await client.info("cluster")
    finally:
        await client.aclose()
    return str(info.get("cluster_enabled", 0)) == "1"


def cluster_retry(failover_deadline: float = DEFAULT_FAILOVER_DEADLINE_S) -> Retry:
    """redis-py's retry policy for the cluster client: exponential backoff from
    :data:`CLUSTER_RETRY_BASE_S` to :data:`CLUSTER_RETRY_CAP_S`, with as many attempts as make
    the pauses add up to at least ``failover_deadline`` seconds."""
    backoff = ExponentialBackoff(cap=CLUSTER_RETRY_CAP_S, base=CLUSTER_RETRY_BASE_S)
    attempts, waited = 0, 0.0
    while waited < failover_deadline:
        attempts += 1
        waited += backoff.compute(attempts)
    return Retry(backoff, retries=attempts)


async def connect_store(
    settings: Settings,
    failover_deadline: float = DEFAULT_FAILOVER_DEADLINE_S,
    **overrides: object,
) -> aioredis.Redis | AsyncRedisCluster:
    """The serving store's client for ``settings.redis_url``: redis-py's asyncio
    ``RedisCluster`` when that node is a cluster node, else the same client as :func:`connect`.

    Both have the same timeouts and ``decode_responses`` as :func:`connect`; ``overrides`` go to
    either. The cluster client is not connected yet: its first command discovers the nodes.
    """
    url = settings.redis_url
    if not await is_cluster(url):
        return connect(settings, **overrides)
    _cluster_database(url)
    options = _client_options(**overrides)
    options.setdefault("retry", cluster_retry(failover_deadline))
    return AsyncRedisCluster.from_url(url, **options)


def connect_store_sync(url: str, **options: object) -> redis_sync.Redis | redis_sync.RedisCluster:
    """A blocking client of the serving store for operations tools: redis-py's ``RedisCluster``
    when the node ``url`` names is a cluster node (its ``scan_iter`` visits every master), else
    the plain client. ``options`` go to either (``decode_responses``, timeouts)."""
    probe = redis_sync.Redis.from_url(
        _database_zero(url), socket_timeout=2.0, socket_connect_timeout=2.0
    )
    try:
        cluster = str(probe.info("cluster").get("cluster_enabled", 0)) == "1"
    finally:
        probe.close()
    if not cluster:
        return redis_sync.Redis.from_url(url, **options)
    _cluster_database(url)
    return redis_sync.RedisCluster.from_url(url, **options)
