"""The counter store against a real Redis (no broker): every counter equals the oracle computed
from the same events, whatever the order, however often events repeat; erasure, windows,
refunds, reviews, consent and friendships in detail. The end-to-end path through the broker and
the worker is in ``test_counters_e2e.py``."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from contracts import events as ev
from contracts.layout import StoreLayout
from contracts.views import FRIENDS_FANOUT_AT
from services.counters.oracle import Oracle
from services.counters.store import CounterStore
from services.notifier.proof import ProofReader, to_json
from socialproof.settings import Settings
from tests.integration.test_processor_support import dump, fanout_errors, first_difference
from tests.support.stores import StoreUnderTest
from tools.loadgen import LoadConfig, LoadGenerator

P = "loadgen"


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def apply_in_chunks(counters: CounterStore, events: list[ev.Event], size: int) -> None:
    for start in range(0, len(events), size):
        await counters.apply(events[start : start + size])


async def assert_matches_oracle(
    reader: ProofReader, oracle: Oracle, gen: LoadGenerator, notes: bool = False
) -> None:
    now = int(gen.anchor.timestamp() * 1000)
    for product in gen.product_ids:
        got = to_json(await reader.read(product, now_ms=now))
        got.pop("as_of")
        assert got == oracle.proof(product, now), product
        activity = [
            (a.kind, a.first_name, int(a.occurred_at.timestamp() * 1000))
            for a in await reader.activity(product)
        ]
        assert activity == oracle.activity(product), product
        for viewer in gen.user_ids:
            count, names = await reader.friends_bought(viewer, product)
            expected = oracle.friends_who_bought(viewer, product)
            assert count == len(expected), (viewer, product)
            expected_names = sorted(
                n for n in (oracle.first_name(u) for u in expected) if n is not None
            )
            assert len(names) == min(3, len(expected_names))
            assert all(n in expected_names for n in names)
    trending = [(t.product_id, t.score) for t in await reader.trending(now_ms=now)]
    assert trending == oracle.trending(now)
    if notes:
        for user in gen.user_ids:
            got = [n.question_id for n in await reader.notes(user)]
            assert got == oracle.notes(user), user


#: friends_bought's fan-out threshold: the default (no viewer of the small shop reaches it: all
#: intersections), a mix (some viewers cross it while events arrive), everyone with a friendship
FANOUT_THRESHOLDS = [
    pytest.param(FRIENDS_FANOUT_AT, id="intersect"),
    pytest.param(6, id="fanout-at-6"),
    pytest.param(1, id="fanout-all"),
]


def on_stores(*cases: tuple[str, object]) -> list:
    """``(store kind, fanout_at)`` cases of a test over the ``store`` fixture
    (tests/support/stores.py): every threshold on one shard, the leanest telling one on the
    sharded layouts (suite time)."""
    return [
        pytest.param(kind, *threshold.values, id=f"{kind}-{threshold.id}")  # type: ignore[attr-defined]
        for kind, threshold in cases
    ]


def shard_states(state: dict[str, object], layout: StoreLayout) -> dict[str, dict[str, object]]:
    """A ``store.dump`` split per shard: each shard's keys without their shard prefix (with one
    shard, the dump itself)."""
    if not layout.sharded:
        return {"": state}
    out: dict[str, dict[str, object]] = {}
    for key, value in state.items():
        tag, _, rest = key.partition(":")
        out.setdefault(tag, {})[rest] = value
    return out


@pytest.mark.parametrize(
    ("store", "fanout_at"),
    on_stores(
        *(("one", threshold) for threshold in FANOUT_THRESHOLDS),
        ("sharded", FANOUT_THRESHOLDS[1]),
        ("cluster", FANOUT_THRESHOLDS[1]),
    ),
    indirect=["store"],
)
async def test_every_counter_matches_the_oracle_in_any_order_with_duplicates(
    store: StoreUnderTest,  # noqa: F811
    fanout_at: int,
) -> None:
    # Given a small shop's events: names, consent, friendships, purchases, refunds, cancels,
    # reviews with edits and deletes, shares, consent changes and three erasures
    gen = LoadGenerator(
        LoadConfig(seed=21, users=40, products=8, mean_friends=8, span_hours=24 * 9)
    )
    events = list(gen.setup_events()) + list(gen.activity_events(900)) + gen.erase_events(3)
    oracle = Oracle(events)
    # When one store gets them in order and another shuffled, with 300 duplicates, in batches
    rng = random.Random(4)
    shuffled = events + rng.sample(events, 300)
    rng.shuffle(shuffled)
    other = store.fresh().namespace
    in_order = CounterStore(store.redis, store.namespace, fanout_at=fanout_at)
    mixed = CounterStore(store.redis, other, fanout_at=fanout_at)
    await apply_in_chunks(in_order, events, 250)
    await apply_in_chunks(mixed, shuffled, 97)
    # Then both hold exactly the same state (on every shard, on every node)
    a, b = store.dump(), store.dump(other)
    assert a == b, first_difference(a, b)
    # And in each shard the fan-out is exactly what the facts say (and used, where the
    # threshold allows; user facts are in every shard)
    shards = shard_states(a, store.layout)
    assert len(shards) == len(store.layout.prefixes)
    for tag, state in shards.items():
        assert fanout_errors(state, fanout_at) == [], tag
        assert bool(state.get("fanout")) == (fanout_at < FRIENDS_FANOUT_AT), tag
    # And every counter read back matches the oracle, question notes too
    reader = ProofReader(store.redis, store.namespace, shards=store.layout.shards)
    await assert_matches_oracle(reader, oracle, gen, notes=True)
    # And replaying everything again changes nothing (not on the cluster: a dump of its 6,800
    # keys takes 3.4 s, and the router is the same as the 4 shards' on one Redis)
    if not store.cluster:
        await apply_in_chunks(mixed, events, 500)
        assert store.dump(other) == b


def _event(cls, payload: dict, at: datetime) -> ev.Event:
    return cls.create(payload, producer=P, occurred_at=at)


def purchase(order: str, user: str, product: str, at: datetime, qty: int = 1) -> ev.Event:
    line = {"product_id": product, "quantity": qty, "unit_price": "5.00"}
    return _event(
        ev.PurchaseCompleted,
        {"order_id": order, "user_id": user, "currency": "EUR", "lines": [line]},
        at,
    )


def refund(rid: str, order: str, user: str, product: str, qty: int, at: datetime) -> ev.Event:
    return _event(
        ev.OrderRefunded,
        {
            "refund_id": rid,
            "order_id": order,
            "user_id": user,
            "lines": [{"product_id": product, "quantity": qty}],
        },
        at,
    )


def consent(user: str, share: bool, feed: bool, at: datetime) -> ev.Event:
    return _event(
        ev.PrivacySettingsChanged,
        {"user_id": user, "share_purchases_with_friends": share, "show_in_activity_feed": feed},
        at,
    )


def name(user: str, first: str, at: datetime) -> ev.Event:
    return _event(ev.UserProfileUpdated, {"user_id": user, "first_name": first}, at)


def friends(a: str, b: str, at: datetime, added: bool = True) -> ev.Event:
    cls = ev.FriendshipAdded if added else ev.FriendshipRemoved
    return _event(cls, {"user_id": a, "friend_id": b}, at)


def review(cls, user: str, product: str, rating: int, at: datetime) -> ev.Event:
    payload = {"review_id": f"r-{user}-{product}", "user_id": user, "product_id": product}
    if cls is not ev.ReviewDeleted:
        payload["rating"] = rating
    return _event(cls, payload, at)


def share(sid: str, user: str, product: str, channel: str, at: datetime) -> ev.Event:
    payload = {"share_id": sid, "user_id": user, "product_id": product, "channel": channel}
    return _event(ev.ProductShared, payload, at)


def traces_of(user: str, redis_client: redis_sync.Redis, namespace: str) -> list[str]:
    """Keys of the namespace that name ``user`` or hold it, but for the erased set."""
    return traces_in(user, dump(redis_client, namespace))


def traces_in(user: str, state: dict[str, object]) -> list[str]:
    """Keys of a dump that name ``user`` or hold it, but for the erased sets (of every shard)."""
    return [
        k
        for k, v in state.items()
        if user in k or user in repr(v) and k.rpartition(":")[2] != "erased"
    ]


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.mark.parametrize(
    ("store", "fanout_at"),
    on_stores(
        ("one", FANOUT_THRESHOLDS[0]),
        ("one", FANOUT_THRESHOLDS[2]),
        ("sharded", FANOUT_THRESHOLDS[2]),
        ("cluster", FANOUT_THRESHOLDS[2]),
    ),
    indirect=["store"],
)
async def test_an_erased_user_leaves_no_trace_and_replays_stay_ignored(
    store: StoreUnderTest,  # noqa: F811
    fanout_at: int,
) -> None:
    t = NOW - timedelta(minutes=30)
    ana, ben, product = "ana-7f3", "ben", "p1"
    history = [
        name(ana, "Ana", t),
        consent(ana, True, True, t),
        friends(ana, ben, t),
        purchase("o1", ana, product, t),
        refund("rf1", "o1", ana, product, 1, t + timedelta(minutes=1)),
        purchase("o2", ana, product, t + timedelta(minutes=2)),
        ev.OrderCancelled.create({"order_id": "o3", "user_id": ana}, producer=P, occurred_at=t),
        review(ev.ReviewPosted, ana, product, 5, t),
        share("s1", ana, product, "x", t),
        purchase("o9", ben, product, t),
    ]
    reviewers = store.layout.product_keys(product).reviewers(product)
    counters = CounterStore(store.redis, store.namespace, fanout_at=fanout_at)
    reader = ProofReader(store.redis, store.namespace, shards=store.layout.shards)
    await counters.apply(history)
    assert (await reader.read(product, now_ms=NOW_MS)).bought.h24 == 2
    assert await reader.friends_bought(ben, product) == (1, ["Ana"])
    assert store.sync.sismember(reviewers, ana)
    # When Ana is erased
    erased = ev.UserErased.create({"user_id": ana}, producer=P, occurred_at=NOW)
    await counters.apply([erased])
    # Then she is in no counter, friend list or feed, and her id is nowhere but the erased set
    proof = to_json(await reader.read(product, now_ms=NOW_MS))
    assert proof["bought"] == {"1h": 1, "24h": 1, "7d": 1}
    assert proof["reviews"]["count"] == 0 and proof["shares"]["total"] == 0
    assert await reader.friends_bought(ben, product) == (0, [])
    assert await reader.activity(product) == []
    assert not store.sync.sismember(reviewers, ana)

    # (in every shard: each has her in its erased set and nowhere else)
    before = store.dump()
    assert traces_in(ana, before) == []
    erased_sets = [k for k in before if k.rpartition(":")[2] == "erased"]
    assert len(erased_sets) == len(store.layout.prefixes)
    assert all(ana in before[k] for k in erased_sets)  # type: ignore[operator]
    # And a replay of all her events (after the erasure) changes nothing
    await counters.apply(history)
    assert store.dump() == before
    # And so does the erasure arriving again, in one call with all her events after it
    await counters.apply([erased, *history])
    assert store.dump() == before


async def test_events_after_an_erasure_in_the_same_call_are_ignored(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    # Given a user erased in the same script call that carries her later events
    t = NOW - timedelta(minutes=30)
    ana, ben, product = "ana-9c1", "ben-9c1", "p1"
    erased = ev.UserErased.create({"user_id": ana}, producer=P, occurred_at=t)
    after = [
        name(ana, "Ana", t),
        consent(ana, True, True, t),
        friends(ana, ben, t),
        purchase("o1", ana, product, t),
        review(ev.ReviewPosted, ana, product, 5, t),
        share("s1", ana, product, "x", t),
    ]
    counters, reader = CounterStore(aredis, namespace), ProofReader(aredis, namespace)
    # When they are applied together, erasure first
    await counters.apply([erased, *after, purchase("o9", ben, product, t)])
    # Then only Ben's purchase counts and Ana's id is nowhere but the erased set
    proof = to_json(await reader.read(product, now_ms=NOW_MS))
    assert proof["bought"] == {"1h": 1, "24h": 1, "7d": 1}
    assert proof["reviews"]["count"] == 0 and proof["shares"]["total"] == 0
    assert traces_of(ana, redis_client, namespace) == []


async def test_windows_expire_without_events_and_late_events_count_only_where_they_fall(
    aredis: aioredis.Redis, namespace: str
) -> None:
    counters, reader = CounterStore(aredis, namespace), ProofReader(aredis, namespace)
    product = "p-win"
    await counters.apply(
        [
            purchase("o1", "u1", product, NOW - timedelta(minutes=30)),
            share("s1", "u1", product, "link", NOW - timedelta(minutes=10)),
        ]
    )
    # a late purchase from three days ago and a late share from five hours ago arrive now
    await counters.apply(
        [
            purchase("o2", "u2", product, NOW - timedelta(days=3)),
            share("s2", "u2", product, "email", NOW - timedelta(hours=5)),
        ]
    )

    async def counts(at: datetime) -> tuple[dict, dict]:
        body = to_json(await reader.read(product, now_ms=int(at.timestamp() * 1000)))
        return body["bought"], {k: body["shares"][k] for k in ("1h", "24h", "total")}

    assert await counts(NOW) == ({"1h": 1, "24h": 1, "7d": 2}, {"1h": 1, "24h": 2, "total": 2})
    # no event arrives; time passes
    assert await counts(NOW + timedelta(hours=2)) == (
        {"1h": 0, "24h": 1, "7d": 2},
        {"1h": 0, "24h": 2, "total": 2},
    )
    assert await counts(NOW + timedelta(hours=25)) == (
        {"1h": 0, "24h": 0, "7d": 2},
        {"1h": 0, "24h": 0, "total": 2},
    )
    assert await counts(NOW + timedelta(days=8)) == (
        {"1h": 0, "24h": 0, "7d": 0},
        {"1h": 0, "24h": 0, "total": 2},
    )
    assert [t.product_id for t in await reader.trending(now_ms=NOW_MS)] == [product]
    assert await reader.trending(now_ms=NOW_MS + 25 * 3_600_000) == []


async def test_refunds_and_cancellations_in_any_order(
    aredis: aioredis.Redis, namespace: str
) -> None:
    counters, reader = CounterStore(aredis, namespace), ProofReader(aredis, namespace)
    t = NOW - timedelta(minutes=5)

    async def buyers() -> int:
        return (await reader.read("p", now_ms=NOW_MS)).bought.h24

    # a partial refund keeps the buyer; the refund of the rest removes them
    await counters.apply([purchase("o1", "u1", "p", t, qty=2), refund("r1", "o1", "u1", "p", 1, t)])
    assert await buyers() == 1
    await counters.apply([refund("r1", "o1", "u1", "p", 1, t)])  # the same refund again
    assert await buyers() == 1
    await counters.apply([refund("r2", "o1", "u1", "p", 1, t)])
    assert await buyers() == 0
    # a refund or a cancellation that arrives before its purchase still applies
    cancel = ev.OrderCancelled.create({"order_id": "o3", "user_id": "u3"}, producer=P)
    await counters.apply([refund("r3", "o2", "u2", "p", 1, t), cancel])
    await counters.apply([purchase("o2", "u2", "p", t), purchase("o3", "u3", "p", t)])
    assert await buyers() == 0
    # another kept order of the same user keeps them counted once
    await counters.apply([purchase("o4", "u2", "p", t), purchase("o5", "u2", "p", t)])
    assert await buyers() == 1


async def test_reviews_apply_edits_and_deletes_newest_first(
    aredis: aioredis.Redis, namespace: str
) -> None:
    counters, reader = CounterStore(aredis, namespace), ProofReader(aredis, namespace)
    t = NOW - timedelta(hours=1)
    await counters.apply(
        [
            review(ev.ReviewEdited, "u1", "p", 4, t + timedelta(minutes=2)),
            review(ev.ReviewPosted, "u1", "p", 1, t),  # older than the edit: ignored
            review(ev.ReviewPosted, "u2", "p", 5, t),
            review(ev.ReviewPosted, "u3", "p", 4, t),
            review(ev.ReviewPosted, "u4", "p", 2, t),
            review(ev.ReviewDeleted, "u4", "p", 0, t + timedelta(minutes=1)),
        ]
    )
    summary = (await reader.read("p", now_ms=NOW_MS)).reviews
    assert summary.count == 3 and summary.average == 4.33
    assert summary.histogram == {"1": 0, "2": 0, "3": 0, "4": 2, "5": 1}


async def test_friends_bought_counts_consenting_friends_with_kept_purchases_only(
    aredis: aioredis.Redis, namespace: str
) -> None:
    counters, reader = CounterStore(aredis, namespace), ProofReader(aredis, namespace)
    t = NOW - timedelta(hours=1)
    viewer, product = "viewer", "p"
    people = {"f1": "Ana", "f2": "Ben", "f3": "Chloe", "f4": "Dan", "f5": "Eve", "stranger": "Zed"}
    setup = [name(u, n, t) for u, n in people.items()] + [name(viewer, "Vic", t)]
    setup += [friends(viewer, f, t) for f in ("f1", "f2", "f3", "f4", "f5")]
    setup += [consent(u, True, True, t) for u in people] + [consent(viewer, True, True, t)]
    # f4 does not share purchases; f5 refunds; the stranger and the viewer are not friends
    setup += [consent("f4", False, True, t + timedelta(minutes=1))]
    buys = [purchase(f"o-{u}", u, product, t) for u in [*people, viewer]]
    buys += [refund("r5", "o-f5", "f5", product, 1, t)]
    await counters.apply(buys)  # purchases first; friendships and consent arrive later
    assert await reader.friends_bought(viewer, product) == (0, [])
    await counters.apply(setup)
    count, names = await reader.friends_bought(viewer, product)
    assert count == 3 and names == ["Ana", "Ben", "Chloe"]
    # friendship removal and consent withdrawal take effect on the next read
    await counters.apply([friends("f1", viewer, t + timedelta(minutes=5), added=False)])
    await counters.apply([consent("f2", False, True, t + timedelta(minutes=5))])
    assert await reader.friends_bought(viewer, product) == (1, ["Chloe"])
    # an older friendship event (a replay) does not undo the newer removal
    await counters.apply([friends(viewer, "f1", t)])
    assert await reader.friends_bought(viewer, product) == (1, ["Chloe"])


async def test_a_fanned_out_viewer_reads_what_an_intersection_reads(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    # Given a viewer with 90 friends, 70 of whom bought the product (60 have a first name), in a
    # store that fans out from 50 friendships and in one that never does
    t = NOW - timedelta(hours=1)
    viewer, product = "viewer", "p-big"
    people = [f"f{i:02d}" for i in range(90)]
    events = [name(u, f"N{u}", t) for u in people[:60]]
    events += [consent(u, True, True, t) for u in people]
    events += [friends(viewer, u, t) for u in people]
    events += [purchase(f"o-{u}", u, product, t) for u in people[:70]]
    events += [purchase("o-stranger", "stranger", product, t), consent("stranger", True, True, t)]
    fanned = CounterStore(aredis, namespace, fanout_at=50)
    plain = CounterStore(aredis, namespace + "i", fanout_at=0)
    readers = ProofReader(aredis, namespace), ProofReader(aredis, namespace + "i")

    async def both_read(expected_count: int) -> None:
        expected = oracle_names(Oracle(events), viewer, product)
        for reader in readers:
            count, names = await reader.friends_bought(viewer, product)
            assert (
                count == expected_count == len(Oracle(events).friends_who_bought(viewer, product))
            )
            assert len(names) == min(3, len(expected)) and len(set(names)) == len(names)
            assert set(names) <= set(expected)

    async def apply(batch: list[ev.Event]) -> None:
        events.extend(batch)
        await fanned.apply(batch)
        await plain.apply(batch)

    try:
        rng = random.Random(3)
        await apply(rng.sample(events, len(events)))  # any order
        assert redis_client.smembers(f"{namespace}:fanout") == {viewer}
        assert redis_client.smembers(f"{namespace}i:fanout") == set()
        # Then both read 70 friends (more than 64: the fanned-out names come from a scan)
        await both_read(70)
        # When one friend refunds, one withdraws consent, one is unfriended, one is erased and
        # one more buys
        await apply(
            [
                refund("rf", "o-f00", "f00", product, 1, t + timedelta(minutes=1)),
                consent("f01", False, True, t + timedelta(minutes=1)),
                friends("f02", viewer, t + timedelta(minutes=1), added=False),
                ev.UserErased.create({"user_id": "f03"}, producer=P, occurred_at=t),
                purchase("o-f80", "f80", product, t),
            ]
        )
        # Then both read 67, and the fan-out holds exactly friends ∩ consenting buyers
        await both_read(67)
        assert fanout_errors(dump(redis_client, namespace), 50) == []
        # When so many friends are erased that fewer than 50 friendships are on record (48)
        await apply(
            [ev.UserErased.create({"user_id": u}, producer=P, occurred_at=t) for u in people[49:]]
        )
        # Then the viewer is read by intersection again, and no fan-out is left behind
        state = dump(redis_client, namespace)
        assert "fanout" not in state and not [k for k in state if k.startswith("fb:")]
        assert fanout_errors(state, 50) == []
        await both_read(45)
    finally:
        keys = list(redis_client.scan_iter(f"{namespace}i:*", count=1000))
        if keys:
            redis_client.delete(*keys)


def oracle_names(oracle: Oracle, viewer: str, product: str) -> list[str]:
    named = (oracle.first_name(u) for u in oracle.friends_who_bought(viewer, product))
    return [n for n in named if n is not None]


async def test_the_shops_consent_defaults_apply_to_users_who_never_chose(
    aredis: aioredis.Redis, namespace: str
) -> None:
    t = NOW - timedelta(hours=1)
    # Given a shop whose defaults share purchases and show users in the feed
    counters = CounterStore(aredis, namespace, default_share_purchases=True)
    reader = ProofReader(aredis, namespace, default_show_in_activity_feed=True)
    events = [
        name("f1", "Ana", t),
        name("f2", "Ben", t),
        friends("v", "f1", t),
        friends("v", "f2", t),
        consent("f2", False, False, t),  # Ben chose: private
        purchase("o1", "f1", "p", t),
        purchase("o2", "f2", "p", t + timedelta(minutes=1)),
    ]
    await counters.apply(events)
    oracle = Oracle(events, default_share=True, default_feed=True)
    # Then Ana, who never chose, is counted and shown; Ben, who opted out, is not
    assert await reader.friends_bought("v", "p") == (1, ["Ana"])
    assert oracle.friends_who_bought("v", "p") == {"f1"}
    feed = [(a.kind, a.first_name) for a in await reader.activity("p")]
    assert feed == [(k, n) for k, n, _ in oracle.activity("p")] == [("bought", "Ana")]
