"""Explanations against a real Redis written by the real counter store (no broker): for random
shops (hypothesis), every figure's explanation adds up, page by page, to the number the proof
read serves, and lists exactly the oracle's buyers and friends; the excluded events and their
reasons in one shop in detail; facts an older processor wrote (no event ids) still add up; and
the endpoint and ``socialproof explain`` through the notifier's own app factory and CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from contracts import events as ev
from contracts.views import BOUGHT_WINDOWS_MS, FRIENDS_FANOUT_AT, SHARE_CHANNELS, SHARE_WINDOWS_MS
from services.counters.oracle import Oracle
from services.counters.store import CounterStore
from services.notifier.explain import Explainer, UserRefs, parse_figure
from services.notifier.proof import VIA_WINDOWS_MS, ProofReader, to_json
from services.notifier.settings import NotifierSettings
from socialproof.settings import Settings
from tests.integration.test_counters_store import _event, purchase, refund, review, share
from tools.loadgen import LoadConfig, LoadGenerator

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
KEY = b"explain-test-key-0123456789abcdef"
PUBLIC_FIGURES = [
    *(f"bought.{w}" for w in BOUGHT_WINDOWS_MS),
    "reviews.count",
    "reviews.verified_count",
    *(f"shares.{w}" for w in SHARE_WINDOWS_MS),
    "shares.total",
    *(f"shares.by_channel.{c}" for c in SHARE_CHANNELS),
    "questions.count",
    "questions.answered",
    "questions.answered_by_buyers",
    *(f"bought_via_shares.{w}" for w in VIA_WINDOWS_MS),
]
MIX = {
    "purchase": 0.35, "refund": 0.06, "cancel": 0.03, "share": 0.15, "review": 0.12,
    "review_edit": 0.02, "review_delete": 0.03, "consent": 0.06, "question": 0.1, "answer": 0.08,
}


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def served(proof: dict, path: str, friends: int | None = None) -> int:
    """The number the proof answer serves at a figure's path."""
    if path.startswith("friends_bought"):
        assert friends is not None
        return friends
    node = proof
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part == "by_channel":
            return node["by_channel"].get(parts[i + 1], 0)
        node = node[part]
    return node


async def every_page(explainer: Explainer, product: str, path: str, viewer: str | None = None,
                     limit: int = 3, with_excluded: bool = True,
                     now_ms: int = NOW_MS) -> tuple[int, list, list]:
    """(value, events, excluded) over all pages of ``limit`` items, each page's value checked."""
    return_value, events, excluded, cursor = None, [], [], None
    while True:
        page = await explainer.explain(
            product, parse_figure(path), viewer_id=viewer, cursor=cursor, limit=limit,
            with_excluded=with_excluded, now_ms=now_ms,
        )
        assert return_value in (None, page.value)
        return_value = page.value
        events += page.events
        excluded += page.excluded
        cursor = page.next
        if cursor is None:
            return page.value, events, excluded


_examples = itertools.count()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10**6),
    fanout_at=st.sampled_from([1, 4, FRIENDS_FANOUT_AT]),
    duplicates=st.integers(0, 40),
    limit=st.integers(1, 4),
)
async def test_every_explanation_adds_up_to_the_served_figure(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str,
    seed: int, fanout_at: int, duplicates: int, limit: int,
) -> None:
    # Given a small random shop: purchases, refunds, cancellations, reviews with edits and
    # deletes, shares, consent changes, questions and answers, an erasure, duplicates, shuffled
    gen = LoadGenerator(LoadConfig(
        seed=seed, users=10, products=2, mean_friends=4, span_hours=24 * 9, anchor=NOW,
        consent_questions_rate=0.5, mix=MIX,
    ))
    events = list(gen.setup_events()) + list(gen.activity_events(160)) + gen.erase_events(1)
    rng = random.Random(seed)
    shuffled = events + rng.sample(events, min(duplicates, len(events)))
    rng.shuffle(shuffled)
    ns = f"{namespace}e{next(_examples)}"
    try:
        await CounterStore(aredis, ns, fanout_at=fanout_at).apply(shuffled)
        oracle = Oracle(events)
        reader = ProofReader(aredis, ns)
        refs = UserRefs(KEY)
        explainer = Explainer(reader, refs)
        erased = {refs(u) for u in oracle.erased}
        for product in gen.product_ids:
            proof = to_json(await reader.read(product, now_ms=NOW_MS))
            # When every figure is explained, in pages of `limit`
            for path in PUBLIC_FIGURES:
                value, events_, excluded = await every_page(explainer, product, path, limit=limit)
                # Then the count of its events is the served number, at that instant
                assert value == len(events_) == served(proof, path), (path, product)
                # and the events are distinct and name no erased user
                ids = [(e["kind"], e.get("order_id") or e.get("share_id") or e.get("question_id")
                        or e["user_ref"]) for e in events_ + excluded]
                assert len(ids) == len(set(ids)), path
                assert not erased & {e.get("user_ref") for e in events_ + excluded}
                # and without the excluded ones, the same events
                if path.startswith(("bought", "shares.1h")):
                    again = await every_page(
                        explainer, product, path, limit=limit, with_excluded=False
                    )
                    assert again == (value, events_, []), path
            # And the buyers are the oracle's
            for label, window in BOUGHT_WINDOWS_MS.items():
                _, events_, _ = await every_page(explainer, product, f"bought.{label}", limit=50)
                expected = {u for u, ms in oracle.latest_buy.get(product, {}).items()
                            if ms >= NOW_MS - window}
                assert {e["user_ref"] for e in events_} == {refs(u) for u in expected}
            # And every viewer's friends_bought is their friends who bought, by the oracle
            for viewer in gen.user_ids:
                count, _ = await reader.friends_bought(viewer, product)
                value, events_, excluded = await every_page(
                    explainer, product, "friends_bought", viewer=viewer, limit=limit
                )
                assert value == len(events_) == count, (viewer, product)
                expected = oracle.friends_who_bought(viewer, product)
                assert {e["user_ref"] for e in events_} == {refs(u) for u in expected}
                # and the excluded friends who are not counted show no ref, only id and reason
                shown = {refs(u) for u in expected}
                for entry in excluded:
                    assert entry.get("user_ref") in shown or set(entry) == {"event_id", "reason"}
    finally:
        keys = list(redis_client.scan_iter(f"{ns}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


def consent(user: str, share_purchases: bool, at: datetime) -> ev.Event:
    payload = {"user_id": user, "share_purchases_with_friends": share_purchases,
               "show_in_activity_feed": True}
    return _event(ev.PrivacySettingsChanged, payload, at)


def friends(a: str, b: str, at: datetime) -> ev.Event:
    return _event(ev.FriendshipAdded, {"user_id": a, "friend_id": b}, at)


def cancel(order: str, user: str, at: datetime) -> ev.Event:
    return _event(ev.OrderCancelled, {"order_id": order, "user_id": user}, at)


def erase(user: str, at: datetime) -> ev.Event:
    return _event(ev.UserErased, {"user_id": user}, at)


def one_shop(now: datetime = NOW) -> list[ev.Event]:
    """ana bought twice (an hour ago and now) and had one order refunded and one cancelled; ben
    bought two days ago; cleo bought but does not share purchases; dan bought and was erased;
    reviews: ana's (verified), eve's (no purchase), fay's (deleted); a share now and one of
    yesterday."""
    day, T = timedelta(days=1), now - timedelta(minutes=30)
    return [
        consent("ana", True, T - 3 * day), consent("ben", True, T - 3 * day),
        consent("cleo", False, T - 3 * day), consent("dan", True, T - 3 * day),
        friends("vic", "ana", T - 3 * day), friends("vic", "cleo", T - 3 * day),
        friends("vic", "dan", T - 3 * day),
        purchase("o1", "ana", "p", T - timedelta(hours=1)), purchase("o2", "ana", "p", T),
        purchase("o3", "ana", "p", T, qty=2), refund("r3", "o3", "ana", "p", 2, T),
        purchase("o4", "ana", "p", T), cancel("o4", "ana", T),
        purchase("o5", "ben", "p", T - 2 * day), purchase("o6", "cleo", "p", T),
        purchase("o7", "dan", "p", T), erase("dan", T),
        review(ev.ReviewPosted, "ana", "p", 5, T), review(ev.ReviewPosted, "eve", "p", 2, T),
        review(ev.ReviewPosted, "fay", "p", 4, T - day), review(ev.ReviewDeleted, "fay", "p", 0, T),
        share("s1", "ana", "p", "email", T), share("s2", "ben", "p", "x", T - day),
    ]


async def test_excluded_events_carry_their_reason(
    aredis: aioredis.Redis, namespace: str
) -> None:
    # Given the shop above, through the real counter store
    events = one_shop()
    await CounterStore(aredis, namespace).apply(events)
    refs = UserRefs(KEY)
    explainer = Explainer(ProofReader(aredis, namespace), refs)
    eid = {e.payload.order_id: str(e.event_id) for e in events
           if isinstance(e, ev.PurchaseCompleted)}

    async def reasons(path: str, viewer: str | None = None) -> tuple[list, list]:
        _, counted, left = await every_page(explainer, "p", path, viewer=viewer)
        return ([(e["event_id"], e["user_ref"]) for e in counted],
                [(e["event_id"], e["reason"]) for e in left])

    # When bought.24h is explained, Then ana (by her latest kept order) and cleo count; ana's
    # other kept order repeats her, her refunded and cancelled orders and ben's old one are out
    counted, left = await reasons("bought.24h")
    assert sorted(counted) == sorted([(eid["o2"], refs("ana")), (eid["o6"], refs("cleo"))])
    assert sorted(left) == sorted([
        (eid["o1"], "repeat_purchase"), (eid["o3"], "refunded"), (eid["o4"], "refunded"),
        (eid["o5"], "outside_window"),
    ])
    # And erased dan is nowhere, under any figure
    for path in PUBLIC_FIGURES:
        _, counted_, left_ = await every_page(explainer, "p", path)
        assert refs("dan") not in {e.get("user_ref") for e in counted_ + left_}
        assert eid["o7"] not in {e.get("event_id") for e in counted_ + left_}
    # When vic's friends_bought is explained, Then ana counts, cleo is excluded without a ref
    counted, left = await reasons("friends_bought", viewer="vic")
    assert counted == [(eid["o2"], refs("ana"))]
    assert sorted(left) == sorted([
        (eid["o6"], "no_consent"), (eid["o1"], "repeat_purchase"), (eid["o3"], "refunded"),
        (eid["o4"], "refunded"),
    ])
    # Reviews: eve's is not verified; fay's was deleted
    counted, left = await reasons("reviews.verified_count")
    assert [r for _, r in counted] == [refs("ana")]
    assert sorted(r for _, r in left) == ["deleted", "not_verified"]
    counted, left = await reasons("reviews.count")
    assert len(counted) == 2 and [r for _, r in left] == ["deleted"]
    # And fay's deleted review is found through the reviewers index (not a key scan): it is
    # listed, by the deletion's event, while fay is in reviewers:p, and not once she is not
    deleted = next(str(e.event_id) for e in events if isinstance(e, ev.ReviewDeleted))
    assert await aredis.smembers(f"{namespace}:reviewers:p") == {"ana", "eve", "fay"}
    _, _, left_ = await every_page(explainer, "p", "reviews.count")
    assert [(e["event_id"], e["user_ref"], e["reason"]) for e in left_] == [
        (deleted, refs("fay"), "deleted")
    ]
    await aredis.srem(f"{namespace}:reviewers:p", "fay")
    _, _, left_ = await every_page(explainer, "p", "reviews.count")
    assert left_ == []
    await aredis.sadd(f"{namespace}:reviewers:p", "fay")
    # Shares: yesterday's is outside the hour
    counted, left = await reasons("shares.1h")
    assert len(counted) == 1 and [r for _, r in left] == ["outside_window"]


async def test_facts_without_event_ids_still_add_up(
    aredis: aioredis.Redis, namespace: str
) -> None:
    # Given keys as the processor wrote them before it kept event ids of orders and shares
    ns, p = namespace, "p"
    await aredis.hset(f"{ns}:order:o1", mapping={"user": "ana", "ts": NOW_MS - 1000, "q:p": 1})
    await aredis.hset(f"{ns}:ub:{p}|ana", "o1", NOW_MS - 1000)
    await aredis.zadd(f"{ns}:buyers:{p}", {"ana": NOW_MS - 1000})
    await aredis.sadd(f"{ns}:user:ana:orders", "o1")
    await aredis.hset(f"{ns}:share:s1", mapping={"p": p, "u": "ana", "ch": "x", "ts": NOW_MS})
    await aredis.zadd(f"{ns}:sharets:{p}", {"s1": NOW_MS})
    await aredis.hset(f"{ns}:shares:{p}", mapping={"total": 1, "ch:x": 1})
    explainer = Explainer(ProofReader(aredis, ns), UserRefs(KEY))
    # Then the explanations count them, with null event ids
    for path in ("bought.1h", "shares.total", "shares.by_channel.x", "shares.1h"):
        value, events, _ = await every_page(explainer, p, path)
        assert value == len(events) == 1 and events[0]["event_id"] is None, path
    # And a product nobody touched explains as zero
    assert await every_page(explainer, "nothing", "bought.7d") == (0, [], [])


def test_the_endpoint_and_the_cli_agree_with_the_proof_answer(
    settings: Settings, namespace: str, service_token: str
) -> None:
    from cli.main import app as cli_app
    from services.notifier.app import create_app

    notifier = NotifierSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers, redis_url=settings.redis_url,
        redis_namespace=namespace, service_token=settings.service_token,
    )

    async def apply(events: list[ev.Event]) -> None:
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            await CounterStore(client, namespace).apply(events)
        finally:
            await client.aclose()

    # Given the shop above, happening now (the endpoint reads at the clock's time), plus four
    # more buyers this hour
    now = datetime.now(UTC)
    base = one_shop(now)
    more = [purchase(f"m{i}", f"buyer{i}", "p", now - timedelta(minutes=i)) for i in range(4)]
    asyncio.run(apply(base + more))
    with TestClient(create_app(notifier)) as client:
        client.headers["Authorization"] = f"Bearer {service_token}"
        url = "/v1/proof/products/p/explain"
        # (the public read: the service token is no viewer token)
        proof = client.get("/v1/proof/products/p", headers={"Authorization": ""}).json()
        # When bought.24h is read in pages of two
        pages, params = [], {"figure": "bought.24h", "limit": "2"}
        while True:
            response = client.get(url, params=params)
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == "no-store"
            pages.append(response.json())
            if pages[-1]["next"] is None:
                break
            params = {**params, "cursor": pages[-1]["next"]}
        # Then the pages add up to the served figure and list each buyer once
        events = [e for page in pages for e in page["events"]]
        assert len(pages) > 2 and {page["value"] for page in pages} == {6}
        assert len(events) == proof["bought"]["24h"] == 6
        assert len({e["user_ref"] for e in events}) == 6
        # And a purchase between pages makes the next page 409, never a wrong total
        first = client.get(url, params={"figure": "bought.24h", "limit": "2"}).json()
        asyncio.run(apply([purchase("late", "zed", "p", now)]))
        changed = client.get(url, params={"figure": "bought.24h", "limit": "2",
                                          "cursor": first["next"]})
        assert changed.status_code == 409 and changed.json()["error"] == "figure_changed"
        # And friends_bought needs a viewer and agrees with the personal figure
        vic = client.get(url, params={"figure": "friends_bought", "viewer_id": "vic"}).json()
        assert vic["value"] == len(vic["events"]) == 1
        assert {e["reason"] for e in vic["excluded"]} >= {"no_consent"}
        web = client.get(url, params={"figure": "bought.24h", "limit": "1000"}).json()
    # When the CLI explains the same figure against the namespace, with the same settings
    env = {
        "SOCIALPROOF_REDIS_URL": settings.redis_url,
        "SOCIALPROOF_REDIS_NAMESPACE": namespace,
        "SOCIALPROOF_SERVICE_TOKEN": service_token,
    }
    result = CliRunner().invoke(cli_app, ["explain", "p", "bought.24h", "--json"], env=env)
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    # Then it lists the same events with the same refs
    assert cli["value"] == web["value"] == 7 and cli["next"] is None
    assert sorted(e["event_id"] for e in cli["events"]) == sorted(
        e["event_id"] for e in web["events"]
    )
    assert {e["user_ref"] for e in cli["events"]} == {e["user_ref"] for e in web["events"]}
    table = CliRunner().invoke(cli_app, ["explain", "p", "friends_bought", "--viewer", "vic"],
                               env=env)
    assert table.exit_code == 0 and "no_consent" in table.stdout and "vic" not in table.stdout
    unknown = CliRunner().invoke(cli_app, ["explain", "p", "bought.2h"], env=env)
    assert unknown.exit_code == 2
