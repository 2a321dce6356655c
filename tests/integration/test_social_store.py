"""The social service's Redis side (:mod:`services.social.store`) on every deployment of the
serving store (tests/support/stores.py): one Redis with one shard, one Redis with 4 shards, and
a Redis Cluster with 12.

- Verified buyers are read from the stream processor's view where its store wrote them: real
  purchases and a refund applied by the counter store (``services.counters.store.CounterStore``),
  products spread over several shards, each pair's ``ub`` key looked up in its product's shard.
- The service's own keys: the rolling-hour limit (one script, one key), reports (the reporter's
  set and the target's reports are in different slots on a cluster: two steps, the count one
  MULTI on one key) and erasure of a user's reports and limits (single-key commands), on one
  Redis and on the cluster (on 4 shards of one Redis they are the same keys as on one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.crc import key_slot

from contracts import events as ev
from services.counters.store import CounterStore
from services.social.store import QaStore
from tests.support.stores import StoreUnderTest

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def purchase(order: str, user: str, products: list[str], at: datetime) -> ev.Event:
    lines = [{"product_id": p, "quantity": 1, "unit_price": "5.00"} for p in products]
    payload = {"order_id": order, "user_id": user, "currency": "EUR", "lines": lines}
    return ev.PurchaseCompleted.create(payload, producer="tests", occurred_at=at)


def refund(order: str, user: str, product: str, at: datetime) -> ev.Event:
    payload = {
        "refund_id": f"rf-{order}",
        "order_id": order,
        "user_id": user,
        "lines": [{"product_id": product, "quantity": 1}],
    }
    return ev.OrderRefunded.create(payload, producer="tests", occurred_at=at)


async def test_verified_buyers_are_read_from_each_products_shard(
    store: StoreUnderTest,  # noqa: F811 (the fixture)
) -> None:
    # Given purchases of products spread over the shards (one order across several of them),
    # and a refund of one line
    products = [f"p{i}" for i in range(6)]
    if store.layout.sharded:
        assert len({store.layout.shard_of(p) for p in products}) > 2
    events = [
        purchase("o1", "ana", products[:4], AT),
        purchase("o2", "ben", [products[4]], AT + timedelta(minutes=1)),
        purchase("o3", "ben", [products[5]], AT + timedelta(minutes=2)),
        refund("o3", "ben", products[5], AT + timedelta(minutes=3)),
    ]
    await CounterStore(store.redis, store.namespace, coupon_secret="tests").apply(events)
    # When the social service asks which (product, user) pairs are verified buyers
    qa = QaStore(store.redis, store.namespace)
    pairs = [(p, u) for p in products for u in ("ana", "ben", "cy")]
    verified = await qa.verified_buyers(pairs)
    # Then exactly the kept purchases are, whichever shard holds them
    assert verified == {*((p, "ana") for p in products[:4]), (products[4], "ben")}
    assert await qa.verified_buyers([]) == set()


@pytest.fixture
async def own_keys(store: StoreUnderTest) -> AsyncIterator[QaStore]:  # noqa: F811
    """The social service's store over the deployment; its keys (outside the namespace, beside
    the pointer) deleted after, one by one (a cluster refuses a multi-slot DEL)."""
    qa = QaStore(store.redis, store.namespace)
    yield qa
    for key in list(store.sync.scan_iter(f"{qa.prefix}:*", count=1000)):
        store.sync.delete(key)


@pytest.mark.parametrize("store", ["one", "cluster"], indirect=True)
async def test_limits_reports_and_erasure_of_the_services_own_keys(
    store: StoreUnderTest,  # noqa: F811 (the fixture)
    own_keys: QaStore,
) -> None:
    qa = own_keys
    # (the key names the module documents, unchanged since one Redis: nothing migrates)
    q1, a1 = f"{qa.prefix}:reports:question:q1", f"{qa.prefix}:reports:answer:a1"
    ana_reported, ben_reported = f"{qa.prefix}:reporter:ana", f"{qa.prefix}:reporter:ben"
    # The rolling-hour limit: two slots, then a wait; a slot given back is free again
    first, _ = await qa.take("posts", "ana", 2)
    second, _ = await qa.take("posts", "ana", 2)
    refused, wait_s = await qa.take("posts", "ana", 2)
    assert first and second and refused is None and 0 < wait_s <= 3600
    await qa.release("posts", "ana", second)
    assert (await qa.take("posts", "ana", 2))[0] is not None
    await qa.take("links", "ana", 5)
    # Reports: one per user and target, counted; on the cluster the reporter's set and the
    # target's reports are in different slots (so one MULTI over both would be refused)
    if store.cluster:
        assert key_slot(q1.encode()) != key_slot(ana_reported.encode())
    assert await qa.report("question", "q1", "ana", "spam") == 1
    assert await qa.report("question", "q1", "ana", "spam again") == 1
    assert await qa.report("question", "q1", "ben", "rude") == 2
    assert await qa.report("answer", "a1", "ana", "spam") == 1
    assert store.sync.smembers(ana_reported) == {"question:q1", "answer:a1"}
    assert store.sync.zcard(f"{qa.prefix}:posts:ana") == 2
    # Erasure: ana's reports, post and link times go; ben's report stays
    await qa.forget_user("ana")
    assert await qa.reports("question", "q1") == 1
    assert await qa.reports("answer", "a1") == 0 and not store.sync.exists(a1)
    left = sorted(store.sync.scan_iter(f"{qa.prefix}:*", count=1000))
    assert left == sorted([q1, ben_reported])  # (a hash without fields is no key)
    assert store.sync.hgetall(q1) == {"ben": "rude"}
