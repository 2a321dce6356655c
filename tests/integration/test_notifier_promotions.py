"""The notifier's share-to-unlock reads (issue #17) against real Redis and a real notifier process:
``bought_via_shares`` in the proof and on the product stream, a sharer's progress (who may read
it, who is named), a product's active promotions, its top sharers, and progress pushed on the
viewer's own stream.

The serving-store keys are written here as the stream processor would write them
(``contracts.views``, "Referrals and promotions"), in a namespace of this module's own that a
notifier of its own serves: the read side is tested without the processor. On a Redis Cluster
(#16), the counter store writes them (12 shards: promotions and credits in the referrals shard,
the products and the badge impressions in theirs) and a notifier whose ``REDIS_URL`` names a
cluster node serves promotions, progress, sharers, an explanation and badge results."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis as redis_sync

from contracts import events as ev
from contracts.layout import CLUSTER_SHARDS, StoreLayout
from contracts.views import Keys
from services.counters.store import CounterStore
from socialproof.redis import connect_store
from socialproof.settings import Settings
from tests.support.rediscluster import ClusterUnderTest, drop_namespaces
from tests.support.referrals import Shop
from tests.support.sse import SseClient
from tests.support.storefront import extra_notifier
from tools.devstack import Stack

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
COUPON = "SP-0123456789ABCDEF"


@pytest.fixture(scope="module")
def ns(settings: Settings) -> Iterator[str]:
    namespace = f"tpromo{uuid.uuid4().hex[:8]}"
    yield namespace
    client = redis_sync.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def base_url(stack: Stack, ns: str) -> Iterator[str]:
    """A notifier serving this module's namespace (no cache: reads see writes at once)."""
    with extra_notifier(
        stack, SOCIALPROOF_REDIS_NAMESPACE=ns, SOCIALPROOF_PROOF_CACHE_MAX_AGE_S="0"
    ) as url:
        yield url


@pytest.fixture
def store(redis_client: redis_sync.Redis) -> redis_sync.Redis:
    return redis_client


def token_for(base_url: str, service_token: str, viewer: str) -> str:
    response = httpx.post(
        f"{base_url}/v1/viewer-tokens",
        json={"viewer_id": viewer},
        headers={"Authorization": f"Bearer {service_token}"},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def define(
    store: redis_sync.Redis,
    keys: Keys,
    promotion: str,
    *,
    product: str | None = None,
    category: str | None = None,
    start_ms: int,
    end_ms: int,
    **extra: object,
) -> None:
    """A promotion as the processor keeps it (``promo:{id}``, ``promos:``/``catpromos:``)."""
    fields: dict = {"title": f"Share {promotion}", "goal": 3, "from": start_ms, "to": end_ms}
    fields.update({"sk": "percent", "sv": "10", "ts": start_ms, "eid": str(uuid.uuid4())})
    if product is not None:
        fields["p"] = product
        store.sadd(keys.product_promotions(product), promotion)
    if category is not None:
        fields["cat"] = category
        store.sadd(keys.category_promotions(category), promotion)
    fields.update(extra)
    store.hset(keys.promotion(promotion), mapping=fields)


def user(store: redis_sync.Redis, keys: Keys, user_id: str, name: str, shares: bool) -> None:
    store.hset(keys.name(user_id), mapping={"n": name})
    store.hset(keys.consent(user_id), mapping={"s": int(shares), "f": 0, "q": 0})


def test_the_proof_and_the_product_stream_carry_bought_via_shares(
    base_url: str, store: redis_sync.Redis, ns: str, uid
) -> None:
    keys, item, now = Keys(ns), uid("p"), int(time.time() * 1000)
    # Given 3 buyers credited to friends' links: an hour, two days and eight days ago
    store.zadd(
        keys.bought_via_shares(item),
        {"b1": now - HOUR_MS, "b2": now - 2 * DAY_MS, "b3": now - 8 * DAY_MS},
    )
    # When the proof is read, Then the windows count them by their credited purchase's time
    proof = httpx.get(f"{base_url}/v1/proof/products/{item}", timeout=5).json()
    assert proof["bought_via_shares"] == {"24h": 1, "7d": 2}
    # And an unknown product reads zeros; the batch read carries the field too
    none = httpx.get(f"{base_url}/v1/proof/products?ids={item},{uid('x')}", timeout=5).json()
    assert [p["bought_via_shares"] for p in none["products"]] == [
        {"24h": 1, "7d": 2},
        {"24h": 0, "7d": 0},
    ]
    # When a stream watches it and another buyer is credited and announced
    with SseClient(f"{base_url}/v1/proof/stream?products={item}") as stream:
        assert stream.next().json()["bought_via_shares"]["24h"] == 1
        store.zadd(keys.bought_via_shares(item), {"b4": now})
        store.publish(keys.changes_channel, json.dumps([item]))
        # Then the product stream pushes the new figure
        pushed = stream.next_matching(lambda e: e.json()["bought_via_shares"]["24h"] == 2)
        assert pushed.json()["bought_via_shares"]["7d"] == 3


@pytest.fixture
def sharing(store: redis_sync.Redis, ns: str, uid) -> dict[str, str]:
    """Ana shares product ``item`` (promotion ``promo``: 10 % off at 3 buyers) and mugs (the
    category promotion ``catpromo``). Credited to her: Ben (a friend who shares purchases), Cleo
    (a friend who does not), Dan (a stranger who does), all in the period; Eve (a friend who
    shares) before it; Fay (a friend who shares) for another product. Ana earned the reward."""
    keys, now = Keys(ns), int(time.time() * 1000)
    w = {
        n: uid(n)
        for n in ("item", "other", "promo", "catpromo", "ana", "ben", "cleo", "dan", "eve", "fay")
    }
    define(store, keys, w["promo"], product=w["item"], start_ms=now - DAY_MS, end_ms=now + DAY_MS)
    define(store, keys, w["catpromo"], category="mugs", start_ms=now - DAY_MS, end_ms=now + DAY_MS)
    store.set(keys.product_category(w["item"]), "mugs")
    for who, name, shares in (
        ("ana", "Ana", True),
        ("ben", "Ben", True),
        ("cleo", "Cleo", False),
        ("dan", "Dan", True),
        ("eve", "Eve", True),
        ("fay", "Fay", True),
    ):
        user(store, keys, w[who], name, shares)
    store.sadd(keys.friends(w["ana"]), w["ben"], w["cleo"], w["eve"], w["fay"])
    for friend in ("ben", "cleo", "eve", "fay"):
        store.sadd(keys.friends(w[friend]), w["ana"])
    store.zadd(
        keys.credits(w["ana"]),
        {
            f"{w['item']}|{w['ben']}": now - 3 * HOUR_MS,
            f"{w['item']}|{w['cleo']}": now - 2 * HOUR_MS,
            f"{w['item']}|{w['dan']}": now - HOUR_MS,
            f"{w['item']}|{w['eve']}": now - 2 * DAY_MS,
            f"{w['other']}|{w['fay']}": now - HOUR_MS,
        },
    )
    store.hset(keys.promotion_progress(w["promo"]), mapping={w["ana"]: 3, w["dan"]: 1})
    store.hset(keys.promotion_progress(w["catpromo"]), mapping={w["ana"]: 3})
    reward = f"rw-{uuid.uuid4().hex[:24]}"
    store.hset(keys.reward(reward), mapping={
        "P": w["promo"], "role": "sharer", "u": w["ana"], "coupon": COUPON, "status": "earned",
        "seq": 1, "buyers": 3,
    })  # fmt: skip
    elsewhere = f"rw-{uuid.uuid4().hex[:24]}"
    store.hset(keys.reward(elsewhere), mapping={
        "P": uid("another"), "role": "buyer", "u": w["ana"], "coupon": "SP-FFFFFFFFFFFFFFFF",
        "status": "earned",
    })  # fmt: skip
    store.sadd(keys.user_rewards(w["ana"]), reward, elsewhere)
    w["reward"] = reward
    return w


def test_a_sharers_progress_is_hers_and_the_shops_only(
    base_url: str, service_token: str, sharing: dict[str, str]
) -> None:
    w = sharing
    url = f"{base_url}/v1/promotions/{w['promo']}/progress"
    params = {"user_id": w["ana"]}
    # When the shop's backend asks with the service token
    shop = httpx.get(url, params=params, headers=bearer(service_token), timeout=5)
    # Then it gets Ana's progress: 3 of 3, her reward in this promotion only, and of the buyers
    # credited in scope and period only Ben named (a friend who shares purchases)
    assert shop.status_code == 200, shop.text
    assert shop.json() == {
        "promotion_id": w["promo"],
        "user_id": w["ana"],
        "buyers": 3,
        "goal": 3,
        "remaining": 0,
        "rewards": [
            {"reward_id": w["reward"], "role": "sharer", "coupon": COUPON, "status": "earned"}
        ],
        "named_buyers": ["Ben"],
        "status": "active",
    }
    assert shop.headers["cache-control"] == "private, no-store"
    # And Ana's own viewer token reads the same
    own = httpx.get(
        url, params=params, headers=bearer(token_for(base_url, service_token, w["ana"])), timeout=5
    )
    assert own.status_code == 200 and own.json() == shop.json()
    # When Ben (whose purchase is one of them) asks for Ana's progress with his token, Then 403
    ben = token_for(base_url, service_token, w["ben"])
    refused = httpx.get(url, params=params, headers=bearer(ben), timeout=5)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "Ben" not in refused.text and COUPON not in refused.text
    # And without a token 401, with a made-up one 403
    assert httpx.get(url, params=params, timeout=5).status_code == 401
    assert httpx.get(url, params=params, headers=bearer("vt1.x.y"), timeout=5).status_code == 403
    # And his own progress is his: nothing credited, no rewards, nobody named
    mine = httpx.get(url, params={"user_id": w["ben"]}, headers=bearer(ben), timeout=5).json()
    assert (mine["buyers"], mine["remaining"], mine["rewards"], mine["named_buyers"]) == (
        0,
        3,
        [],
        [],
    )
    # And a category promotion names the friends credited for products of that category
    cat = httpx.get(
        f"{base_url}/v1/promotions/{w['catpromo']}/progress",
        params=params,
        headers=bearer(service_token),
        timeout=5,
    ).json()
    assert (cat["buyers"], cat["named_buyers"], cat["rewards"]) == (3, ["Ben"], [])
    # And an unknown promotion is 404; a missing user_id 422 naming it
    unknown = httpx.get(
        f"{base_url}/v1/promotions/nope-{w['promo']}/progress",
        params=params,
        headers=bearer(service_token),
        timeout=5,
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    missing = httpx.get(url, headers=bearer(service_token), timeout=5)
    assert missing.status_code == 422 and missing.json()["fields"][0]["field"] == "user_id"


def test_a_product_lists_its_active_promotions_and_its_categorys(
    base_url: str, store: redis_sync.Redis, ns: str, uid
) -> None:
    keys, now, item = Keys(ns), int(time.time() * 1000), uid("p")
    mine, cats, ended, early, later = (uid(n) for n in ("mine", "cat", "ended", "early", "later"))
    # Given the product's own promotion, its category's, one ended early, one over, one to come
    define(store, keys, mine, product=item, start_ms=now - DAY_MS, end_ms=now + 2 * DAY_MS,
           bk="fixed", bv="5.00", bc="EUR", cap=100)  # fmt: skip
    define(store, keys, cats, category=f"c-{item}", start_ms=now - DAY_MS, end_ms=now + DAY_MS)
    store.set(keys.product_category(item), f"c-{item}")
    define(store, keys, ended, product=item, start_ms=now - DAY_MS, end_ms=now - 1, ended=now - 1)
    define(store, keys, early, product=item, start_ms=now - 3 * DAY_MS, end_ms=now - DAY_MS)
    define(store, keys, later, product=item, start_ms=now + DAY_MS, end_ms=now + 3 * DAY_MS)
    # When anyone asks (no token)
    response = httpx.get(f"{base_url}/v1/products/{item}/promotions", timeout=5)
    # Then only the active ones, the product's own first, with rewards, goal and period
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"].startswith("public")
    listed = response.json()["promotions"]
    assert [p["id"] for p in listed] == [mine, cats]
    first = listed[0]
    assert first["sharer_reward"] == {"kind": "percent", "value": "10", "currency": None}
    assert first["buyer_reward"] == {"kind": "fixed", "value": "5.00", "currency": "EUR"}
    assert (first["goal"], first["max_rewards"], first["status"]) == ({"buyers": 3}, 100, "active")
    assert first["title"] == f"Share {mine}" and first["product_id"] == item
    assert listed[1]["category"] == f"c-{item}" and listed[1]["buyer_reward"] is None
    # And a product without promotions lists none
    assert (
        httpx.get(f"{base_url}/v1/products/{uid('q')}/promotions", timeout=5).json()["promotions"]
        == []
    )


def test_the_shop_sees_a_products_top_sharers(
    base_url: str, service_token: str, store: redis_sync.Redis, ns: str, uid
) -> None:
    keys, item = Keys(ns), uid("p")
    store.zadd(keys.sharers(item), {"zoe": 3, "ana": 3, "ben": 1, "dan": 2})
    store.zadd(keys.bought_via_shares(item), {f"b{i}": i for i in range(9)})
    url = f"{base_url}/v1/products/{item}/sharers"
    # When the shop asks for the top two, Then the best two, ties by user id, and the totals
    top = httpx.get(url, params={"limit": 2}, headers=bearer(service_token), timeout=5)
    assert top.status_code == 200, top.text
    assert top.json() == {
        "product_id": item,
        "sharers": [{"user_id": "ana", "buyers": 3}, {"user_id": "zoe", "buyers": 3}],
        "sharers_total": 4,
        "credited_buyers": 9,
    }
    # And without the service token: 401, with a viewer token: 403
    assert httpx.get(url, timeout=5).status_code == 401
    viewer = token_for(base_url, service_token, "ana")
    assert httpx.get(url, headers=bearer(viewer), timeout=5).status_code == 403


def test_progress_is_pushed_on_the_sharers_own_stream(
    base_url: str, service_token: str, store: redis_sync.Redis, ns: str, sharing: dict[str, str]
) -> None:
    w, keys = sharing, Keys(ns)
    store.hset(keys.promotion_progress(w["promo"]), w["ana"], 1)
    ana = token_for(base_url, service_token, w["ana"])
    ben = token_for(base_url, service_token, w["ben"])
    stream = f"{base_url}/v1/me/stream?promotions={w['promo']},nope-{w['promo']}&viewer_token="
    with SseClient(stream + ana) as mine, SseClient(stream + ben) as his:
        # Given both streams open: each gets its own viewer's progress, then ready
        first = mine.next()
        assert first.event == "progress" and first.id is None
        assert (first.json()["user_id"], first.json()["buyers"]) == (w["ana"], 1)
        assert mine.next().event == "ready"
        assert his.next().json()["user_id"] == w["ben"]
        assert his.next().event == "ready"
        # When another of Ana's buyers is credited and the processor announces her
        store.hset(keys.promotion_progress(w["promo"]), w["ana"], 2)
        store.publish(keys.user_changes_channel, json.dumps([w["ana"]]))
        # Then her stream pushes the new progress
        pushed = mine.next()
        assert pushed.event == "progress" and pushed.json()["buyers"] == 2
        assert pushed.json()["remaining"] == 1
        # And an announcement that changes nothing sends nothing; Ben's stream stays quiet
        store.publish(keys.user_changes_channel, json.dumps([w["ana"], w["ben"]]))
        store.hset(keys.promotion_progress(w["promo"]), w["ana"], 3)
        store.publish(keys.user_changes_channel, json.dumps([w["ana"]]))
        assert mine.next().json()["buyers"] == 3
        with pytest.raises(AssertionError):
            his.next(timeout=0.3)
    # And a bad promotion list is 422 naming it
    bad = httpx.get(f"{base_url}/v1/me/stream?promotions=,&viewer_token={ana}", timeout=5)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "promotions"


# --- on a Redis Cluster ---------------------------------------------------------------------------


async def _apply_on_cluster(url: str, namespace: str, events: list[ev.Event]) -> None:
    """Apply ``events`` as a live worker on the cluster does (12 shards, recorded)."""
    redis = await connect_store(Settings(redis_url=url, redis_namespace=namespace))
    try:
        await CounterStore(redis, namespace, follow_active=True, coupon_secret="c" * 32).apply(
            events
        )
    finally:
        await redis.aclose()


def test_on_a_redis_cluster_promotions_explanations_and_results_are_served(
    stack: Stack,
    redis_cluster: ClusterUnderTest,  # noqa: F811
    service_token: str,
) -> None:
    ns = f"npc{uuid.uuid4().hex[:10]}"
    url = redis_cluster.url
    now = datetime.now(UTC).replace(microsecond=0)
    t = now - timedelta(minutes=30)
    # two products of different shards (the referrals in a third), in one category
    shard_of = StoreLayout(ns, CLUSTER_SHARDS).shard_of
    first = "p-0"
    second = next(f"p-{i}" for i in range(1, 100) if shard_of(f"p-{i}") != shard_of(first))
    shop = Shop(21)
    token, category = shop.token(), f"mugs-{ns}"
    visitor = "visitor-cluster-1"
    events = [
        *(shop.product(p, category, t - timedelta(days=1)) for p in (first, second)),
        shop.promotion(
            "pr-mugs",
            t - timedelta(days=1),
            t - timedelta(days=1),
            now + timedelta(days=5),
            category=category,
            goal=2,
            title="Mugs",
        ),
        shop.share("s-ana", "ana", first, t, token),
        shop.purchase("o-ben", "ben", [first], t + timedelta(minutes=1), token),
        shop.purchase("o-cleo", "cleo", [second], t + timedelta(minutes=2), token),
        # one visitor sees the plain badge of both products: one visitor, in two shards
        *(
            shop.event(ev.BadgeViewed, {"visitor_id": visitor, "product_id": p}, t + dt)
            for p, dt in ((first, timedelta(minutes=3)), (second, timedelta(minutes=4)))
        ),
    ]
    admin = {"Authorization": f"Bearer {service_token}"}
    try:
        # Given the events written to the cluster by a live worker's store
        asyncio.run(_apply_on_cluster(url, ns, events))
        # And a notifier whose REDIS_URL names a node of the cluster
        with (
            extra_notifier(
                stack,
                REDIS_URL=url,
                SOCIALPROOF_REDIS_NAMESPACE=ns,
                SOCIALPROOF_PROOF_CACHE_MAX_AGE_S="0",
            ) as notifier,
            httpx.Client(base_url=notifier, timeout=5) as client,
        ):
            # Then both products list the category's promotion
            for p in (first, second):
                listed = client.get(f"/v1/products/{p}/promotions").json()["promotions"]
                assert [promo["id"] for promo in listed] == ["pr-mugs"], p
            # And Ana reached its goal with two buyers of two shards, and holds her reward
            progress = client.get(
                "/v1/promotions/pr-mugs/progress", params={"user_id": "ana"}, headers=admin
            ).json()
            assert (progress["buyers"], progress["remaining"]) == (2, 0)
            assert [(r["role"], r["status"]) for r in progress["rewards"]] == [("sharer", "earned")]
            # And she is the first product's top sharer
            sharers = client.get(f"/v1/products/{first}/sharers", headers=admin).json()
            assert sharers["sharers"] == [{"user_id": "ana", "buyers": 1}]
            # And bought_via_shares is explained by Ben's purchase
            explained = client.get(
                f"/v1/proof/products/{first}/explain",
                params={"figure": "bought_via_shares.24h"},
                headers=admin,
            ).json()
            assert explained["value"] == 1
            assert [e["order_id"] for e in explained["events"]] == ["o-ben"]
            # And the plain badge's results count the visitor once, with both impressions
            results = client.get("/v1/experiments/_/results", headers=admin)
            assert results.status_code == 200, results.text
            (badge,) = results.json()["variants"]
            assert (badge["visitors"], badge["impressions"]) == (1, 2)
            # And an experiment on the products' category (a category of this test's own: every
            # notifier reads the experiments topic) assigns the visitor and takes her beacon,
            # the category read in the referrals shard
            created = client.post(
                "/v1/experiments",
                json={
                    "id": f"x-{ns}",
                    "category": category,
                    "variants": [{"name": "control", "badge": "none"}, {"name": "shown"}],
                    "split": [50, 50],
                },
                headers=admin,
            )
            assert created.status_code == 201, created.text
            try:
                assigned = client.get(
                    f"/v1/products/{second}/experiment", params={"visitor_id": visitor}
                )
                assert assigned.status_code == 200, assigned.text
                variant = assigned.json()["variant"]
                beacon = {
                    "visitor_id": visitor,
                    "events": [
                        {
                            "kind": "impression",
                            "product_id": p,
                            "experiment_id": f"x-{ns}",
                            "variant": variant,
                            "at": now.isoformat(),
                        }
                        for p in (first, second)
                    ],
                }
                accepted = client.post("/v1/beacons", json=beacon)
                assert accepted.status_code == 202, accepted.text
                assert accepted.json()["accepted"] == 2
            finally:
                client.post(f"/v1/experiments/x-{ns}/stop", headers=admin)
    finally:
        drop_namespaces(url, ns)
