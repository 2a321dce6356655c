"""Verified purchases, questions and answers, and question notes in the counter store, against a
real Redis (no broker): the state equals the oracle computed from the same events whatever their
order, however often they repeat (refunds, cancellations, moderation and erasure included); the
notes' daily cap, who gets none, erasure, and one announcement per batch in detail; on every
layout of the store (one shard, four, a Redis Cluster's twelve), what the notifier reads of them
(proof, notes merged over the shards, explanations) is the oracle's. Layout:
``contracts/views.py``; rules: ``services/counters/oracle.py``."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from contracts import codec
from contracts import events as ev
from contracts.views import NOTES_KEEP, QUESTION_NOTES_PER_DAY
from services.counters.app import BatchProcessor
from services.counters.oracle import Oracle
from services.counters.store import CounterStore
from services.notifier.explain import Explainer, UserRefs, parse_figure
from services.notifier.proof import ProofReader, to_json
from socialproof.settings import Settings
from tests.integration.test_counters_store import (
    _event,
    apply_in_chunks,
    purchase,
    refund,
    review,
    traces_of,
)
from tests.integration.test_processor_support import dump, first_difference
from tests.support.stores import StoreUnderTest
from tools.loadgen import LoadConfig, LoadGenerator

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY_START = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
async def aredis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def ask(qid: str, user: str, product: str, at: datetime) -> ev.Event:
    payload = {"question_id": qid, "product_id": product, "user_id": user, "text": "Warm?"}
    return _event(ev.QuestionAsked, payload, at)


def answer(aid: str, qid: str, user: str, product: str, at: datetime) -> ev.Event:
    payload = {
        "answer_id": aid,
        "question_id": qid,
        "product_id": product,
        "user_id": user,
        "text": "Very.",
    }
    return _event(ev.AnswerPosted, payload, at)


def vote(a: ev.Event, voter: str, helpful: bool, at: datetime) -> ev.Event:
    p = a.payload
    payload = {
        "answer_id": p.answer_id,
        "question_id": p.question_id,
        "product_id": p.product_id,
        "user_id": voter,
        "helpful": helpful,
    }
    return _event(ev.AnswerVoted, payload, at)


def accept(a: ev.Event, at: datetime) -> ev.Event:
    p = a.payload
    payload = {
        "answer_id": p.answer_id,
        "question_id": p.question_id,
        "product_id": p.product_id,
        "by": "shop",
    }
    return _event(ev.AnswerAccepted, payload, at)


def moderate(target: ev.Event, hidden: bool, at: datetime) -> ev.Event:
    p = target.payload
    is_answer = isinstance(target, ev.AnswerPosted)
    payload = {
        "target": "answer" if is_answer else "question",
        "target_id": p.answer_id if is_answer else p.question_id,
        "question_id": p.question_id,
        "product_id": p.product_id,
        "hidden": hidden,
        "reason": "test",
    }
    return _event(ev.QaModerated, payload, at)


def privacy(user: str, notes: bool | None, at: datetime) -> ev.Event:
    payload = {"user_id": user, "share_purchases_with_friends": True, "show_in_activity_feed": True}
    if notes is not None:
        payload["notify_on_questions"] = notes
    return _event(ev.PrivacySettingsChanged, payload, at)


def cancel(order: str, user: str, at: datetime) -> ev.Event:
    return _event(ev.OrderCancelled, {"order_id": order, "user_id": user}, at)


def erase(user: str, at: datetime = NOW) -> ev.Event:
    return _event(ev.UserErased, {"user_id": user}, at)


def notes_of(redis_client: redis_sync.Redis, ns: str, user: str) -> list[str]:
    """The user's notes, newest first (as the oracle lists them)."""
    return list(reversed(redis_client.zrange(f"{ns}:notes:{user}", 0, -1)))


def oracle_errors(
    redis_client: redis_sync.Redis,
    ns: str,
    oracle: Oracle,
    products: list[str],
    users: list[str],
    answers: list[str],
) -> list[str]:
    """Where the store's verified figures, Q&A counts, question lists, answers' votes and
    acceptance, and everyone's notes differ from the oracle."""
    errors = []
    for p in products:
        want = oracle.reviews(p)
        hist = want["verified_histogram"]
        expected = {
            "vcount": want["verified_count"],
            "vsum": sum(int(stars) * n for stars, n in hist.items()),
            **{f"vh{stars}": n for stars, n in hist.items()},
        }
        raw = redis_client.hgetall(f"{ns}:reviews:{p}")
        got = {k: int(v) for k, v in raw.items() if k.startswith("v")}
        if got != {k: v for k, v in expected.items() if v}:
            errors.append(f"reviews:{p} verified {got} != {expected}")
        counts = oracle.questions(p)
        expected_qa = {
            "questions": counts["count"],
            "answered": counts["answered"],
            "answered_by_buyers": counts["answered_by_buyers"],
        }
        got_qa = {k: int(v) for k, v in redis_client.hgetall(f"{ns}:qa:{p}").items()}
        if got_qa != {k: v for k, v in expected_qa.items() if v}:
            errors.append(f"qa:{p} {got_qa} != {expected_qa}")
        listed = redis_client.zrange(f"{ns}:questions:{p}", 0, -1)
        visible = oracle.visible_questions(p)
        if listed != sorted(visible, key=lambda q: (visible[q].occurred_at, q)):
            errors.append(f"questions:{p} {listed} != {sorted(visible)}")
    for a in answers:
        fields = redis_client.hmget(f"{ns}:answer:{a}", "helpful", "accepted")
        got_answer = (int(fields[0] or 0), fields[1] == "1")
        if got_answer != (oracle.helpful(a), oracle.accepted(a)):
            errors.append(f"answer:{a} {got_answer} != {oracle.helpful(a), oracle.accepted(a)}")
    for u in users:
        if notes_of(redis_client, ns, u) != oracle.notes(u):
            errors.append(f"notes:{u} {notes_of(redis_client, ns, u)} != {oracle.notes(u)}")
    return errors


def shop_with_questions(seed: int) -> tuple[LoadGenerator, list[ev.Event]]:
    """A small shop over two weeks: purchases, refunds, cancellations, reviews, consent changes
    (half the users want question notes), many questions (more than the daily cap for the buyers
    of the popular products, more than NOTES_KEEP over the fortnight), answers, helpful votes that
    change, acceptance, moderation that hides and shows again, and three erasures."""
    mix = {
        "purchase": 0.22,
        "refund": 0.05,
        "cancel": 0.03,
        "review": 0.1,
        "review_edit": 0.02,
        "review_delete": 0.02,
        "consent": 0.04,
        "question": 0.3,
        "answer": 0.22,
    }
    gen = LoadGenerator(
        LoadConfig(
            seed=seed,
            users=24,
            products=4,
            span_hours=24 * 14,
            anchor=NOW,
            consent_questions_rate=0.5,
            mix=mix,
        )
    )
    events = list(gen.setup_events(friendships=False)) + list(gen.activity_events(1400))
    rng = random.Random(seed)
    questions = [e for e in events if isinstance(e, ev.QuestionAsked)]
    answers = [e for e in events if isinstance(e, ev.AnswerPosted)]

    def when() -> datetime:
        return NOW - timedelta(seconds=rng.random() * 14 * 86_400)

    extra: list[ev.Event] = []
    for _ in range(300):
        extra.append(vote(rng.choice(answers), gen.user(), rng.random() < 0.7, when()))
    extra += [accept(rng.choice(answers), when()) for _ in range(30)]
    for _ in range(80):
        target = rng.choice(questions if rng.random() < 0.5 else answers)
        extra.append(moderate(target, rng.random() < 0.6, when()))
    # a question delivered three times
    extra += [questions[0], questions[0]]
    return gen, events + extra + gen.erase_events(3)


async def test_verified_figures_qa_counts_and_notes_match_the_oracle_in_any_order(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    gen, events = shop_with_questions(seed=19)
    oracle = Oracle(events)
    answers = sorted({e.payload.answer_id for e in events if isinstance(e, ev.AnswerPosted)})
    # the scenario reaches what it is meant to test
    notes = {u: oracle.notes(u) for u in gen.user_ids}
    assert max(len(n) for n in notes.values()) == NOTES_KEEP  # some were trimmed
    assert sum(1 for n in notes.values() if n) >= 5
    assert sum(oracle.questions(p)["answered_by_buyers"] for p in gen.product_ids) > 0
    assert sum(oracle.reviews(p)["verified_count"] for p in gen.product_ids) > 0
    # When one store gets the events in order and another shuffled with 400 duplicates
    rng = random.Random(7)
    shuffled = events + rng.sample(events, 400)
    rng.shuffle(shuffled)
    mixed_ns = namespace + "x"
    in_order, mixed = CounterStore(aredis, namespace), CounterStore(aredis, mixed_ns)
    try:
        await apply_in_chunks(in_order, events, 300)
        await apply_in_chunks(mixed, shuffled, 97)
        # Then both hold exactly the same state, which is what the oracle says
        a, b = dump(redis_client, namespace), dump(redis_client, mixed_ns)
        assert a == b, first_difference(a, b)
        errors = oracle_errors(
            redis_client, namespace, oracle, gen.product_ids, gen.user_ids, answers
        )
        assert errors == [], errors[:5]
        # And the notifier reads it so: the proof's verified figures and question counts, and
        # each viewer's notes
        reader, now = ProofReader(aredis, namespace), int(NOW.timestamp() * 1000)
        for p in gen.product_ids:
            got = to_json(await reader.read(p, now_ms=now))
            got.pop("as_of")
            assert got == oracle.proof(p, now), p
        for u in gen.user_ids:
            assert [n.question_id for n in await reader.notes(u)] == oracle.notes(u), u
        # And a redelivered batch, and a full replay, change nothing
        await mixed.apply(shuffled[-97:])
        await apply_in_chunks(mixed, events, 500)
        assert dump(redis_client, mixed_ns) == b
    finally:
        keys = list(redis_client.scan_iter(f"{mixed_ns}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


async def test_on_every_layout_the_notifier_reads_the_oracles_qa_figures_notes_and_explanations(
    store: StoreUnderTest,  # noqa: F811
) -> None:
    # Given the shop with questions through the real counter store, on one shard, four on one
    # Redis and twelve on a Redis Cluster (questions in their product's shard, each shard keeping
    # its own notes of its products' questions)
    gen, events = shop_with_questions(seed=19)
    oracle = Oracle(events)
    await apply_in_chunks(CounterStore(store.redis, store.namespace), events, 300)
    reader = ProofReader(store.redis, store.namespace, shards=store.layout.shards)
    explainer = Explainer(reader, UserRefs(b"q" * 32))
    now = int(NOW.timestamp() * 1000)
    # (sharded: the questions are about products of several shards)
    assert len({store.layout.product_prefix(p) for p in gen.product_ids}) > 1 or (
        not store.layout.sharded
    )
    for p in gen.product_ids:
        # Then the proof's verified figures and question counts are the oracle's
        got = to_json(await reader.read(p, now_ms=now))
        got.pop("as_of")
        assert got == oracle.proof(p, now), p
        # and their explanations list as many events as they count
        for path in ("questions.count", "questions.answered_by_buyers", "reviews.verified_count"):
            explained = await explainer.explain_all(p, parse_figure(path), now_ms=now)
            head, figure = path.split(".")
            assert explained.value == len(explained.events) == got[head][figure], (p, path)
    # And each viewer's notes, merged over the shards, are the oracle's
    for u in gen.user_ids:
        assert [n.question_id for n in await reader.notes(u)] == oracle.notes(u), u


async def test_a_review_and_an_answer_follow_their_authors_standing_in_every_order(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    # Given Ana's review and answer to Ben's question, her purchase of two, a partial refund and
    # a second order, cancelled: in every order they arrive in, she ends a verified buyer (one
    # unit of o1 kept)
    t = NOW - timedelta(hours=3)
    ana, p = "ana", "p-v"
    history = [
        review(ev.ReviewPosted, ana, p, 4, t),
        ask("q1", "ben", p, t),
        answer("a1", "q1", ana, p, t + timedelta(minutes=1)),
        purchase("o1", ana, p, t - timedelta(days=1), qty=2),
        refund("r1", "o1", ana, p, 1, t),
        purchase("o2", ana, p, t),
        cancel("o2", ana, t),
    ]
    verified = {"vcount": "1", "vsum": "4", "vh4": "1"}
    qa = {"questions": "1", "answered": "1", "answered_by_buyers": "1"}
    states = []
    try:
        # 52 of the 5,040 orders, each event in its own call
        for i, order in enumerate(itertools.islice(itertools.permutations(history), 0, None, 97)):
            ns = f"{namespace}-{i}"
            counters = CounterStore(aredis, ns)
            for event in order:
                await counters.apply([event])
            reviews = redis_client.hgetall(f"{ns}:reviews:{p}")
            assert {k: v for k, v in reviews.items() if k.startswith("v")} == verified, order
            assert redis_client.hgetall(f"{ns}:qa:{p}") == qa, order
            states.append(dump(redis_client, ns))
            # When the rest of o1 is refunded, she is no buyer any more: her review is
            # unverified and her answer no longer by a buyer
            await counters.apply([refund("r2", "o1", ana, p, 1, t)])
            reviews = redis_client.hgetall(f"{ns}:reviews:{p}")
            assert not any(k.startswith("v") for k in reviews) and reviews["count"] == "1"
            assert redis_client.hgetall(f"{ns}:qa:{p}") == {"questions": "1", "answered": "1"}
            assert redis_client.hget(f"{ns}:review:{p}|{ana}", "vf") == "0"
            # And a new purchase makes both count again
            await counters.apply([purchase("o3", ana, p, t)])
            assert redis_client.hgetall(f"{ns}:qa:{p}") == qa
            assert redis_client.hget(f"{ns}:reviews:{p}", "vcount") == "1"
        assert len(states) == 52 and all(s == states[0] for s in states)
    finally:
        keys = list(redis_client.scan_iter(f"{namespace}-*", count=1000))
        if keys:
            redis_client.delete(*keys)


async def test_question_notes_are_capped_per_day_and_the_next_one_moves_up(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    # Given Ben, who bought the product and wants question notes
    counters = CounterStore(aredis, namespace)
    p, ben = "p-cap", "ben"
    await counters.apply([privacy(ben, True, DAY_START), purchase("o1", ben, p, DAY_START)])
    # When seven questions are asked about it on one day, and one the next day
    asked = [ask(f"q{i}", f"asker{i}", p, DAY_START + timedelta(hours=1 + i)) for i in range(7)]
    asked.append(ask("q-next", "asker9", p, DAY_START + timedelta(days=1, hours=1)))
    changes = await counters.apply(list(reversed(asked)))  # the latest first
    # Then he is notified of the day's first five (by ask time) and of the next day's question
    first_five = [f"q{i}" for i in range(QUESTION_NOTES_PER_DAY)]
    assert notes_of(redis_client, namespace, ben) == ["q-next", *reversed(first_five)]
    assert changes.users == {ben}
    capped = redis_client.zrange(f"{namespace}:notecap:{ben}:20261120", 0, -1)
    assert capped == [f"q{i}" for i in range(7)]
    assert 0 < redis_client.ttl(f"{namespace}:notecap:{ben}:20261120") <= 3 * 86_400
    # And a redelivered question counts once, whatever else arrives with it
    before = dump(redis_client, namespace)
    changes = await counters.apply(asked)
    assert dump(redis_client, namespace) == before and changes.users == set()
    # When the shop hides the day's second question, the sixth moves up into the notes
    await counters.apply([moderate(asked[1], True, NOW)])
    assert notes_of(redis_client, namespace, ben) == ["q-next", "q5", "q4", "q3", "q2", "q0"]
    # And showing it again takes the sixth's place back
    await counters.apply([moderate(asked[1], False, NOW + timedelta(minutes=1))])
    assert notes_of(redis_client, namespace, ben) == ["q-next", *reversed(first_five)]
    assert redis_client.hgetall(f"{namespace}:qa:{p}") == {"questions": "8"}


async def test_notes_keep_the_newest_and_bring_older_ones_back_when_newer_ones_go(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    # Given Ben, who wants notes and bought two products: about the first, the daily cap's worth
    # of questions on each of ten days and two more on the eleventh (52 notified, the newest 50
    # kept); about the second, two questions the day before
    start = DAY_START - timedelta(days=20)
    ben, p1, p2 = "ben-keep", "p-keep1", "p-keep2"
    events = [
        privacy(ben, True, start),
        purchase("o1", ben, p1, start),
        purchase("o2", ben, p2, start),
    ]
    asked = [
        ask(f"q{day:02d}-{i}", f"asker{i}", p1, start + timedelta(days=day, hours=1 + i))
        for day in range(1, 12)
        for i in range(QUESTION_NOTES_PER_DAY if day < 11 else 2)
    ]
    earlier = [ask(f"q00-{i}", "asker", p2, start + timedelta(hours=3 + i)) for i in range(2)]
    events += asked + earlier
    random.Random(5).shuffle(events)
    counters = CounterStore(aredis, namespace)
    await apply_in_chunks(counters, events, 7)

    def check() -> list[str]:
        notes = notes_of(redis_client, namespace, ben)
        assert notes == Oracle(events).notes(ben)
        return notes

    assert len(check()) == NOTES_KEEP and "q01-2" in check() and "q01-1" not in check()
    # When the four newest questions are hidden one by one, the older notified ones come back
    # (from the same day, then from the day before, about the other product)
    for i, question in enumerate(reversed(asked[-4:])):
        events.append(moderate(question, True, NOW + timedelta(minutes=i)))
        await counters.apply(events[-1:])
        assert len(check()) == NOTES_KEEP
    assert check()[-4:] == ["q01-1", "q01-0", "q00-1", "q00-0"]
    # And shown again, they push the older ones out again
    for i, question in enumerate(asked[-4:]):
        events.append(moderate(question, False, NOW + timedelta(hours=1, minutes=i)))
        await counters.apply(events[-1:])
    assert check()[-1] == "q01-2"


async def test_no_note_to_the_asker_nor_to_buyers_who_did_not_opt_in_or_bought_later(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    t = NOW - timedelta(hours=5)
    p = "p-who"
    counters = CounterStore(aredis, namespace)
    people = {
        "asker": privacy("asker", True, t),  # a buyer who wants notes, but asks herself
        "yes": privacy("yes", True, t),
        "no": privacy("no", False, t),
        "never-chose": None,  # no privacy settings at all
        "older-app": privacy("older-app", None, t),  # settings without the field
        "later": privacy("later", True, t),  # buys only after the question
        "refunder": privacy("refunder", True, t),
    }
    events = [e for e in people.values() if e is not None]
    events += [purchase(f"o-{u}", u, p, t) for u in people if u != "later"]
    events += [purchase("o-late", "later", p, t + timedelta(hours=2))]
    events += [refund("rf", "o-refunder", "refunder", p, 1, t + timedelta(hours=3))]
    question = ask("q-who", "asker", p, t + timedelta(hours=1))
    oracle = Oracle([*events, question])
    await counters.apply(events)
    changes = await counters.apply([question])
    notified = {u for u in people if notes_of(redis_client, namespace, u)}
    assert notified == {"yes"} == {u for u in people if oracle.notes(u)}
    assert changes.users == {"yes"}  # announced: the users whose notes changed
    # And the same in another order (the question first) in another namespace
    other = CounterStore(aredis, namespace + "o")
    try:
        await other.apply([question, *reversed(events)])
        assert {u for u in people if notes_of(redis_client, namespace + "o", u)} == {"yes"}
    finally:
        redis_client.delete(*redis_client.scan_iter(f"{namespace}o:*"))
    # When "yes" withdraws consent, the note goes; given again, it comes back
    await counters.apply([privacy("yes", False, t + timedelta(hours=4))])
    assert notes_of(redis_client, namespace, "yes") == []
    await counters.apply([privacy("yes", True, t + timedelta(hours=5))])
    assert notes_of(redis_client, namespace, "yes") == ["q-who"]


async def test_erasure_removes_questions_answers_votes_and_notes_everywhere(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    t = NOW - timedelta(hours=5)
    p = "p-erase"
    ana, ben, cleo = "ana-e19", "ben-e19", "cleo-e19"
    q_ana, q_ben = ask("q-ana", ana, p, t + timedelta(hours=1)), ask("q-ben", ben, p, t)
    a_ana, a_cleo = answer("a-ana", "q-ben", ana, p, t), answer("a-cleo", "q-ana", cleo, p, t)
    history = [
        privacy(ana, True, t),
        privacy(cleo, True, t),
        purchase("o-ana", ana, p, t - timedelta(hours=1)),
        purchase("o-cleo", cleo, p, t - timedelta(hours=1)),
        q_ana,
        q_ben,
        a_ana,
        a_cleo,
        vote(a_cleo, ana, True, t),
        vote(a_cleo, ben, True, t),
        review(ev.ReviewPosted, ana, p, 5, t),
    ]
    counters = CounterStore(aredis, namespace)
    await counters.apply(history)
    assert notes_of(redis_client, namespace, ana) == ["q-ben"]
    assert notes_of(redis_client, namespace, cleo) == ["q-ana", "q-ben"]
    assert redis_client.hget(f"{namespace}:answer:a-cleo", "helpful") == "2"
    # When Ana is erased
    changes = await counters.apply([erase(ana)])
    # Then her question, answer, vote, review and notes are gone from every count and list
    # (Ben's question is left, its only answer was hers)
    assert redis_client.hgetall(f"{namespace}:qa:{p}") == {"questions": "1"}
    assert redis_client.zrange(f"{namespace}:questions:{p}", 0, -1) == ["q-ben"]
    assert notes_of(redis_client, namespace, cleo) == ["q-ben"]
    assert redis_client.hget(f"{namespace}:answer:a-cleo", "helpful") == "1"
    assert not redis_client.hgetall(f"{namespace}:reviews:{p}")
    assert changes.users == {cleo}
    assert traces_of(ana, redis_client, namespace) == []
    # And a replay of everything she did, before or after the erasure, changes nothing
    before = dump(redis_client, namespace)
    await counters.apply(history)
    await counters.apply([erase(ana), *history])
    assert dump(redis_client, namespace) == before


async def test_a_batch_announces_its_products_and_its_noted_users_once(
    aredis: aioredis.Redis, redis_client: redis_sync.Redis, namespace: str
) -> None:
    t = NOW - timedelta(hours=5)
    p = "p-announce"
    setup = [privacy(u, True, t) for u in ("u1", "u2")]
    setup += [purchase(f"o-{u}", u, p, t) for u in ("u1", "u2")]
    counters = CounterStore(aredis, namespace, follow_active=True)
    await counters.apply(setup)
    processor = BatchProcessor(counters, None, consumer="test", dead_letter_topic="dead")  # type: ignore[arg-type]
    batch = [ask(f"q{i}", "asker", p, t + timedelta(minutes=i)) for i in range(3)]
    records = [
        SimpleNamespace(topic="social.questions", partition=0, offset=i, key=b"", value=raw)
        for i, raw in enumerate(codec.encode(e) for e in batch)
    ]
    pubsub = aredis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{namespace}:changes", f"{namespace}:user-changes")
    try:
        await processor.handle(records)
        messages = []
        for _ in range(20):
            message = await pubsub.get_message(timeout=0.1)
            if message:
                messages.append((message["channel"], orjson.loads(message["data"])))
            elif len(messages) == 2:
                break
        assert sorted(messages) == [
            (f"{namespace}:changes", [p]),
            (f"{namespace}:user-changes", ["u1", "u2"]),
        ]
    finally:
        await pubsub.aclose()
