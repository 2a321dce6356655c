"""Every counter end to end: events published to the real broker (out of order across topics,
with duplicates and a replay), applied by the session's worker process, read back through the
notifier's ``GET /v1/proof/products/{id}`` and the ProofReader, and compared with the oracle
computed here from the very same event list."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import redis as redis_sync
import redis.asyncio as aioredis

from contracts import events as ev
from contracts.views import Keys
from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader
from socialproof.settings import Settings
from tests.integration.test_counters_store import (
    consent,
    friends,
    name,
    purchase,
    refund,
    review,
    share,
)
from tests.integration.test_processor_support import (
    ms,
    processed_count,
    publish,
    wait_processed,
)
from tests.support.waiting import wait_for
from tools.devstack import Stack

P = "test"


def proof_without_time(notifier_api: httpx.Client, product: str) -> dict:
    response = notifier_api.get(f"/v1/proof/products/{product}")
    assert response.status_code == 200, response.text
    body = response.json()
    body.pop("as_of")
    return body


def scenario(uid) -> tuple[list[ev.Event], dict[str, str]]:
    """A shop's events with every twist; ``who`` maps roles to unique ids."""
    who = {r: uid(r) for r in ("ana", "ben", "cara", "dan", "eve", "viewer", "pa", "pb")}
    ana, ben, cara, dan, eve, viewer = (
        who[r] for r in ("ana", "ben", "cara", "dan", "eve", "viewer")
    )
    pa, pb = who["pa"], who["pb"]
    now = datetime.now(UTC)
    t = lambda **d: now - timedelta(**d)  # noqa: E731
    order = lambda r: f"{who[r]}-o{uuid.uuid4().hex[:6]}"  # noqa: E731
    o_ana, o_ana2, o_ben_a, o_ben_b = order("ana"), order("ana"), order("ben"), order("ben")
    o_ana_old = order("ana")
    events = [
        # the refund and the cancellation are published before their purchases
        refund(f"rf-{o_ben_b}", o_ben_b, ben, pb, 1, t(minutes=50)),
        ev.OrderCancelled.create(
            {"order_id": o_ana2, "user_id": ana}, producer=P, occurred_at=t(minutes=5)
        ),
        purchase(o_ana, ana, pa, t(minutes=30)),
        purchase(o_ana2, ana, pb, t(minutes=25)),
        purchase(o_ana_old, ana, pb, t(days=8)),  # outside every window
        purchase(o_ben_a, ben, pa, t(hours=3)),
        purchase(o_ben_b, ben, pb, t(days=2)),
        purchase(order("cara"), cara, pa, t(minutes=10)),
        purchase(order("dan"), dan, pa, t(minutes=20)),
        purchase(order("eve"), eve, pa, t(minutes=40)),
        purchase(order("viewer"), viewer, pa, t(minutes=15)),
        review(ev.ReviewPosted, ana, pa, 5, t(minutes=29)),
        review(ev.ReviewPosted, ben, pa, 3, t(hours=2)),
        review(ev.ReviewEdited, ben, pa, 4, t(hours=1, minutes=30)),
        review(ev.ReviewPosted, eve, pa, 2, t(minutes=39)),
        review(ev.ReviewDeleted, eve, pa, 0, t(minutes=38)),
        review(ev.ReviewPosted, dan, pa, 1, t(minutes=19)),
        share(f"s-{ana}", ana, pa, "x", t(minutes=28)),
        share(f"s2-{ana}", ana, pb, "whatsapp", t(hours=5)),
        share(f"s-{cara}", cara, pa, "email", t(hours=2)),
        # friendships and consent arrive after the purchases
        *[friends(viewer, f, t(minutes=1)) for f in (ana, cara, dan, eve)],
        friends(ben, viewer, t(minutes=1)),
        *[
            name(u, n, t(days=9))
            for u, n in zip(
                (ana, ben, cara, dan, eve, viewer),
                ("Ana", "Ben", "Cara", "Dan", "Eve", "Vic"),
                strict=True,
            )
        ],
        consent(ana, True, True, t(days=9)),
        consent(ben, True, True, t(days=9)),
        consent(cara, False, False, t(days=9)),
        consent(cara, True, False, t(minutes=2)),  # consent given after the purchase
        consent(dan, True, True, t(days=9)),
        # eve never gave consent: private by default
        consent(viewer, True, True, t(days=9)),
        ev.UserErased.create({"user_id": dan}, producer=P, occurred_at=t(minutes=3)),
        share(f"s-{dan}", dan, pa, "link", t(minutes=2)),  # after the erasure: ignored
    ]
    return events, who


async def test_every_counter_is_served_and_matches_the_oracle(
    stack: Stack, settings: Settings, notifier_api: httpx.Client, uid
) -> None:
    # Given a shop's events with refunds, cancellations, edits, consent and an erasure
    events, who = scenario(uid)
    # And duplicates: a producer retry of some events, published right after them
    rng = random.Random(7)
    published = list(events)
    for event in rng.sample(events, 10):
        published.insert(published.index(event) + 1, event)
    oracle = Oracle(published)
    before = processed_count(stack.worker_url)
    # When they are published to their topics and the worker applies them
    await publish(settings, published)
    wait_processed(stack.worker_url, before + len(published))
    # Then the notifier's product endpoint serves exactly the oracle's counters
    now = ms(datetime.now(UTC))
    for product in (who["pa"], who["pb"]):
        assert proof_without_time(notifier_api, product) == oracle.proof(product, now)
    # the figures are the intended ones, not trivially empty
    assert oracle.proof(who["pa"], now)["bought"] == {"1h": 4, "24h": 5, "7d": 5}
    assert oracle.proof(who["pa"], now)["reviews"]["average"] == 4.5
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        reader = ProofReader(redis, "sp")
        # And friends_bought: consenting friends with kept purchases, never the viewer
        count, names = await reader.friends_bought(who["viewer"], who["pa"])
        expected = oracle.friends_who_bought(who["viewer"], who["pa"])
        assert count == len(expected) == 3  # ana, ben, cara (dan erased, eve private)
        assert sorted(names) == ["Ana", "Ben", "Cara"]
        # pb: ana's 8-day-old purchase counts (no window), her cancelled order and ben's refunded
        # one do not
        assert oracle.friends_who_bought(who["viewer"], who["pb"]) == {who["ana"]}
        assert await reader.friends_bought(who["viewer"], who["pb"]) == (1, ["Ana"])
        # And the activity feed: only users who allow it, first names only
        feed = [(a.kind, a.first_name, ms(a.occurred_at)) for a in await reader.activity(who["pa"])]
        assert feed == oracle.activity(who["pa"]) and {n for _, n, _ in feed} == {"Ana", "Ben", "Vic"}
        # When everything is replayed (a redelivery of the whole list)
        before = processed_count(stack.worker_url)
        await publish(settings, events)
        wait_processed(stack.worker_url, before + len(events))
        # Then nothing changes
        for product in (who["pa"], who["pb"]):
            assert proof_without_time(notifier_api, product) == oracle.proof(product, now)
        assert await reader.friends_bought(who["viewer"], who["pa"]) == (count, names)
        # And consent withdrawn later takes effect on the next read
        t = datetime.now(UTC)
        before = processed_count(stack.worker_url)
        await publish(settings, [consent(who["ana"], False, False, t)])
        wait_processed(stack.worker_url, before + 1)
        assert (await reader.friends_bought(who["viewer"], who["pa"]))[0] == 2
        assert "Ana" not in {a.first_name for a in await reader.activity(who["pa"])}
    finally:
        await redis.aclose()


async def test_trending_ranks_products_by_weighted_activity_of_the_last_24_hours(
    stack: Stack, settings: Settings, uid
) -> None:
    # Given activity around a random hour in the past that no other test uses
    rng = random.Random(uuid.uuid4().int)
    anchor = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(150_000))
    products = [uid(f"tp{i}") for i in range(4)]
    users = [uid(f"tu{i}") for i in range(6)]
    events: list[ev.Event] = []
    for i, product in enumerate(products):
        for j, user in enumerate(users[: i + 2]):
            at = anchor - timedelta(hours=j * 5, minutes=i + 1)
            events.append(purchase(f"{product}-{user}", user, product, at))
            events.append(share(f"{product}-{user}", user, product, "link", at))
    events.append(review(ev.ReviewPosted, users[0], products[0], 5, anchor - timedelta(minutes=9)))
    events.append(purchase(f"old-{products[0]}", users[1], products[0], anchor - timedelta(days=2)))
    events.append(refund("tr1", f"{products[3]}-{users[0]}", users[0], products[3], 1, anchor))
    oracle = Oracle(events)
    before = processed_count(stack.worker_url)
    # When the worker applies them
    await publish(settings, events)
    wait_processed(stack.worker_url, before + len(events))
    # Then the ranking read at that time equals the oracle's
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        reader = ProofReader(redis, "sp")
        got = [(t.product_id, t.score) for t in await reader.trending(now_ms=ms(anchor))]
        assert got == oracle.trending(ms(anchor)) and len(got) == 4
        # And a day later, with no event in between, the window has emptied
        assert await reader.trending(now_ms=ms(anchor + timedelta(hours=25))) == []
    finally:
        await redis.aclose()


def test_changes_are_announced_coalesced(
    stack: Stack, settings: Settings, redis_client: redis_sync.Redis, uid
) -> None:
    import asyncio

    hot, cold = uid("hot"), uid("cold")
    messages: list[list[str]] = []
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Keys("sp").changes_channel)
    wait_for(lambda: pubsub.get_message(timeout=0.1) is None, 2, "the subscription")
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                messages.append(orjson.loads(message["data"]))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        # When 200 purchases of a hot product and one of a cold product arrive together
        now = datetime.now(UTC)
        events = [purchase(uid("o"), uid("u"), hot, now) for _ in range(200)]
        events.append(purchase(uid("o"), uid("u"), cold, now))
        before = processed_count(stack.worker_url)
        asyncio.run(publish(settings, events, concurrently=True))
        wait_processed(stack.worker_url, before + len(events))
        # Then both are announced, the hot one in far fewer messages than events
        wait_for(
            lambda: any(cold in m for m in messages) and any(hot in m for m in messages),
            5,
            "both products to be announced",
        )
        hot_messages = sum(1 for m in messages if hot in m)
        assert 1 <= hot_messages <= 20, hot_messages
    finally:
        stop.set()
        listener.join(2)
        pubsub.close()
