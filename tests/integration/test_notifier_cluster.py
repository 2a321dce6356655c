"""The notifier on a Redis Cluster (#16): a notifier process whose ``REDIS_URL`` names a node of
the session's cluster (3 masters + 3 replicas) serves proof, friends_bought, batch reads across
shards, trending and activity, and pushes a change announced on the cluster over SSE; its hub,
subscribed to one node, moves to another when that node dies; a cluster that cannot answer is a
503, as a single node's outage is.

The facts are written by the counter store itself through redis-py's cluster client (12 shards,
as a worker on a cluster records them) and announced on ``{ns}:changes`` as the worker does: the
stack's worker writes the single Redis, not the cluster."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from contracts import events as ev
from contracts import namespaces
from contracts.layout import CLUSTER_SHARDS, StoreLayout, layout_field
from services.counters.store import CounterStore
from services.notifier.app import create_app
from services.notifier.cache import CachedProofs, ProofCache
from services.notifier.hub import ClusterSubscriber, Hub
from services.notifier.proof import ProofReader
from services.notifier.ratelimit import RateLimiter
from services.notifier.settings import NotifierSettings
from socialproof.processes import free_port
from socialproof.redis import connect_store
from socialproof.settings import Settings
from tests.integration.test_counters_store import consent, friends, name, purchase
from tests.support.rediscluster import ClusterUnderTest, drop_namespaces
from tests.support.sse import SseClient
from tests.support.storefront import extra_notifier
from tests.support.waiting import wait_for
from tools.devstack import Stack


async def _apply(
    url: str, base: str, events: list[ev.Event], rebuilt: tuple[str, int] | None = None
) -> StoreLayout:
    """Apply and announce ``events`` as the worker does, on the cluster; the layout used.
    ``rebuilt``: into that namespace with that many shards (recorded beside the base's pointer,
    as ``replay rebuild --shards`` does), then switched to as ``--switch`` does."""
    redis = await connect_store(Settings(redis_url=url, redis_namespace=base))
    try:
        store = CounterStore(redis, base, coupon_secret="")
        pointer = namespaces.pointer_key(base)
        if rebuilt is None:
            await store.announce(await store.apply(events))
            return await store.layout()
        namespace, shards = rebuilt
        await redis.hset(pointer, layout_field(namespace), shards)
        await store.apply(events, namespace=namespace)
        await redis.hset(pointer, "active", namespace)
        return await store.layout(namespace)
    finally:
        await redis.aclose()


def test_a_notifier_on_a_redis_cluster_serves_reads_and_pushes_changes(
    stack: Stack,
    redis_cluster: ClusterUnderTest,  # noqa: F811
    service_token: str,
) -> None:
    ns = f"nc{uuid.uuid4().hex[:10]}"
    url = redis_cluster.url
    now = datetime.now(UTC).replace(microsecond=0)
    t = now - timedelta(minutes=5)
    ana, ben, cleo = "ana", "ben", "cleo"
    # two products of different shards, so reads cross slots (and masters)
    shard_of = StoreLayout(ns, CLUSTER_SHARDS).shard_of
    first = "p-0"
    second = next(f"p-{i}" for i in range(1, 100) if shard_of(f"p-{i}") != shard_of(first))
    try:
        # Given Ben and Cleo, who share purchases and show in the feed, Ana's friends, and Ben
        # buying the first product, written to the cluster by the counter store
        layout = asyncio.run(
            _apply(
                url,
                ns,
                [
                    name(ben, "Ben", t),
                    name(cleo, "Cleo", t),
                    consent(ben, True, True, t),
                    consent(cleo, True, True, t),
                    friends(ana, ben, t),
                    friends(ana, cleo, t),
                    purchase("o1", ben, first, t),
                ],
            )
        )
        assert layout.shards == CLUSTER_SHARDS  # what a worker on a cluster records
        # And a notifier whose REDIS_URL names a node of the cluster
        with (
            extra_notifier(stack, REDIS_URL=url, SOCIALPROOF_REDIS_NAMESPACE=ns) as notifier,
            httpx.Client(base_url=notifier, timeout=5) as client,
        ):
            assert client.get("/readyz").json()["checks"]["redis"] == "ok"
            token = client.post(
                "/v1/viewer-tokens",
                json={"viewer_id": ana},
                headers={"Authorization": f"Bearer {service_token}"},
            ).json()["token"]
            # Then it serves the proof, and Ana's friends who bought it
            public = client.get(f"/v1/proof/products/{first}")
            assert public.status_code == 200, public.text
            assert public.json()["bought"] == {"1h": 1, "24h": 1, "7d": 1}
            mine = client.get(
                f"/v1/proof/products/{first}", headers={"Authorization": f"Bearer {token}"}
            ).json()
            assert mine["friends_bought"] == {"count": 1, "names": ["Ben"]}
            # And a batch read across shards, trending and the activity feed
            batch = client.get("/v1/proof/products", params={"ids": f"{first},{second}"}).json()
            bought = {p["product_id"]: p["bought"]["24h"] for p in batch["products"]}
            assert bought == {first: 1, second: 0}
            trending = client.get("/v1/trending").json()
            assert [p["product_id"] for p in trending["products"]] == [first]
            activity = client.get("/v1/activity", params={"products": first}).json()
            assert [(a["kind"], a["first_name"]) for a in activity["items"]] == [("bought", "Ben")]
            # When Ana watches the second product and Cleo buys it (announced on the cluster)
            stream = f"{notifier}/v1/proof/stream?products={second}&viewer_token={token}"
            with SseClient(stream) as sse:
                initial = sse.next(timeout=10).json()
                assert initial["bought"]["24h"] == 0
                assert initial["friends_bought"] == {"count": 0, "names": []}
                asyncio.run(_apply(url, ns, [purchase("o2", cleo, second, now)]))
                # Then the change is pushed, with Ana's friend named
                pushed = sse.next_matching(
                    lambda e: e.json()["bought"]["24h"] == 1, timeout=10
                ).json()
                assert pushed["friends_bought"] == {"count": 1, "names": ["Cleo"]}
            trending = client.get("/v1/trending").json()
            assert {p["product_id"] for p in trending["products"]} == {first, second}
            # When a rebuild into 3 shards, where both bought the second product, is switched to
            three = (f"{ns}r", 3)
            orders = [purchase("o3", ben, second, t), purchase("o4", cleo, second, t)]
            assert asyncio.run(_apply(url, ns, orders, rebuilt=three)).shards == 3
            # Then the notifier serves it, read with its recorded 3 shards
            wait_for(
                lambda: client.get(f"/v1/proof/products/{second}").json()["bought"]["24h"] == 2,
                10,
                "the notifier to serve the rebuilt namespace",
            )
    finally:
        drop_namespaces(url, ns, f"{ns}r")


async def test_the_hub_moves_to_another_node_when_its_node_dies(
    redis_cluster: ClusterUnderTest,  # noqa: F811
) -> None:
    local = redis_cluster.require_local()
    cluster = AsyncRedisCluster.from_url(redis_cluster.url, decode_responses=True)
    await cluster.initialize()
    # Given a hub subscribed through a replica (killing it needs no failover: the test is quick)
    masters = {node.port for node in local.masters()}
    replica = next(node for node in local.nodes if node.port not in masters)
    names = sorted(node.name for node in cluster.get_nodes())
    subscriber = ClusterSubscriber(
        cluster, redis_cluster.url, first=names.index(replica.address), decode_responses=True
    )
    reads = 0

    async def read_encoded(products: list[str]) -> list[tuple[dict, bytes]]:
        nonlocal reads
        reads += 1
        return [({"product_id": p, "read": reads}, b"") for p in products]

    channel = f"hub{uuid.uuid4().hex[:8]}:changes"
    hub = Hub(subscriber, channel, read_encoded)
    box = hub.subscribe(frozenset({"p"}))
    hub.start()
    publisher = local.masters()[0].client()
    try:
        assert (await box.take(10))["p"][0]["read"] == 1  # refreshed once subscribed
        assert subscriber.node == replica.address
        publisher.publish(channel, '["p"]')
        assert (await box.take(5))["p"][0]["read"] == 2  # heard on the replica
        # When that node dies
        local.kill(replica)
        # Then the hub subscribes to another node, refreshes its watchers (announcements made
        # in between were missed) and hears the next announcement there
        assert (await box.take(10))["p"][0]["read"] == 3
        assert subscriber.node != replica.address and hub.connected.is_set()
        publisher.publish(channel, '["p"]')
        assert (await box.take(5))["p"][0]["read"] == 4
    finally:
        await hub.stop()
        publisher.close()
        await cluster.aclose()
        if not replica.running:
            local.restart(replica)


async def test_a_cluster_that_cannot_answer_is_a_503() -> None:
    # Given a notifier whose store is a Redis Cluster none of whose nodes answers (redis-py's
    # cluster client raises its own RedisClusterException then, outside RedisError)
    app = create_app(NotifierSettings(service_token="s" * 32))
    cluster = AsyncRedisCluster(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    reader = ProofReader(cluster, "down", shards=CLUSTER_SHARDS)
    app.state.reader, app.state.limiter = reader, RateLimiter(1000, 1000)
    app.state.proofs = CachedProofs(reader, ProofCache(100, 1.0), 1)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
            for path in ("/v1/proof/products/p1", "/v1/trending", "/v1/activity?products=p1"):
                # Then reads answer 503 with Retry-After, as on a single node, never a 500
                answer = await client.get(path)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json()["error"] == "store_unavailable"
                assert answer.headers["retry-after"]
    finally:
        await cluster.aclose()
