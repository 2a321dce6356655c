"""The processor's pure parts: events -> store operations, the oracle's rules, the load
generator's determinism, and the bench registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.registry import REGISTRY, Result, Target, scenario
from contracts import events as ev
from services.counters.oracle import Oracle
from services.counters.store import operation
from tools.loadgen import LoadConfig, LoadGenerator

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_a_purchase_becomes_one_operation_with_lines_merged_per_product() -> None:
    event = ev.PurchaseCompleted.create(
        {
            "order_id": "o1",
            "user_id": "u1",
            "currency": "EUR",
            "lines": [
                {"product_id": "p1", "quantity": 1, "unit_price": "1.00"},
                {"product_id": "p2", "quantity": 2, "unit_price": "1.00"},
                {"product_id": "p1", "quantity": 3, "unit_price": "1.00"},
            ],
        },
        producer="t",
        occurred_at=AT,
    )
    ms = int(AT.timestamp() * 1000)
    assert operation(event) == ["P", "o1", "u1", ms, ["p1", 4, "p2", 2], str(event.event_id)]


def test_every_event_type_maps_to_an_operation_or_is_deliberately_ignored() -> None:
    gen = LoadGenerator(LoadConfig(seed=1, users=20, products=5, mean_friends=4))
    events = list(gen.setup_events()) + list(gen.activity_events(300)) + gen.erase_events(1)
    kinds = {type(e): operation(e)[0] for e in events}
    assert kinds[ev.PurchaseCompleted] == "P" and kinds[ev.OrderRefunded] == "R"
    assert kinds[ev.OrderCancelled] == "C" and kinds[ev.ProductShared] == "S"
    assert kinds[ev.ReviewPosted] == kinds[ev.ReviewEdited] == kinds[ev.ReviewDeleted] == "V"
    assert kinds[ev.FriendshipAdded] == "F" and kinds[ev.PrivacySettingsChanged] == "X"
    assert kinds[ev.UserProfileUpdated] == "N" and kinds[ev.UserErased] == "E"
    deleted = ev.ProductDeleted.create({"product_id": "p1"}, producer="catalog")
    assert operation(deleted) is None  # no counter depends on the catalogue


def test_questions_answers_votes_acceptance_and_moderation_become_operations() -> None:
    ms, ids = int(AT.timestamp() * 1000), {"question_id": "q1", "product_id": "p1"}

    def op(cls, payload: dict) -> list:
        event = cls.create(payload, producer="t", occurred_at=AT)
        built = operation(event)
        assert built[-1] == str(event.event_id) or cls is ev.AnswerAccepted
        return built[:-1] if cls is not ev.AnswerAccepted else built

    asked = op(ev.QuestionAsked, {**ids, "user_id": "u1", "text": "Warm?"})
    assert asked == ["Q", "q1", "p1", "u1", ms]
    answer = {**ids, "answer_id": "a1", "user_id": "u2"}
    assert op(ev.AnswerPosted, {**answer, "text": "Yes."}) == ["A", "a1", "q1", "p1", "u2", ms]
    voted = op(ev.AnswerVoted, {**answer, "user_id": "u3", "helpful": True})
    assert voted == ["H", "a1", "q1", "p1", "u3", 1, ms]
    assert op(ev.AnswerAccepted, {**answer, "by": "shop"}) == ["K", "a1", "q1", "p1"]
    hidden = {**ids, "target": "answer", "target_id": "a1", "hidden": True}
    assert op(ev.QaModerated, hidden) == ["M", "a", "a1", "q1", "p1", 1, ms]
    shown = {**ids, "target": "question", "target_id": "q1", "hidden": False}
    assert op(ev.QaModerated, shown) == ["M", "q", "q1", "q1", "p1", 0, ms]


def test_consent_to_question_notes_is_the_last_field_and_absent_means_no() -> None:
    base = {"user_id": "u1", "share_purchases_with_friends": True, "show_in_activity_feed": False}
    for given, expected in ((None, 0), (False, 0), (True, 1)):
        payload = base if given is None else {**base, "notify_on_questions": given}
        event = ev.PrivacySettingsChanged.create(payload, producer="t", occurred_at=AT)
        ms = int(AT.timestamp() * 1000)
        assert operation(event) == ["X", "u1", 1, 0, ms, str(event.event_id), expected]


def test_purchases_and_shares_carry_their_event_id_last() -> None:
    line = {"product_id": "p1", "quantity": 1, "unit_price": "1.00"}
    body = {"order_id": "o1", "user_id": "u1", "currency": "EUR", "lines": [line]}
    bought = ev.PurchaseCompleted.create(body, producer="t", occurred_at=AT)
    shared = ev.ProductShared.create(
        {"share_id": "s1", "user_id": "u1", "product_id": "p1", "channel": "x"},
        producer="t",
        occurred_at=AT,
    )
    assert operation(bought)[-1] == str(bought.event_id)
    assert operation(shared)[-1] == str(shared.event_id)


def test_the_load_generator_is_deterministic_by_seed() -> None:
    config = LoadConfig(seed=9, users=50, products=10, mean_friends=6, anchor=AT)
    a, b = LoadGenerator(config), LoadGenerator(config)
    first = [e.model_dump_json() for e in list(a.setup_events()) + list(a.activity_events(200))]
    second = [e.model_dump_json() for e in list(b.setup_events()) + list(b.activity_events(200))]
    assert first == second
    other = LoadGenerator(LoadConfig(seed=10, users=50, products=10, mean_friends=6, anchor=AT))
    assert [e.model_dump_json() for e in other.activity_events(200)] != first[-200:]


def test_the_friendship_graph_has_the_mean_degree_and_a_heavy_tail() -> None:
    gen = LoadGenerator(LoadConfig(seed=3, users=2_000, products=10, mean_friends=40))
    degree: dict[str, int] = {}
    pairs = gen.friendship_pairs()
    for a, b in pairs:
        assert a != b
        degree[a] = degree.get(a, 0) + 1
        degree[b] = degree.get(b, 0) + 1
    assert len(pairs) == len(set(pairs))
    mean = 2 * len(pairs) / 2_000
    assert 36 <= mean <= 40
    assert max(degree.values()) > 5 * mean  # a few users have very many friends


def test_product_popularity_is_zipf_like() -> None:
    gen = LoadGenerator(LoadConfig(seed=3, users=100, products=100))
    picks = [gen.product() for _ in range(20_000)]
    top, tenth = picks.count("p0"), picks.count("p9")
    assert top > 5 * tenth > 0


def _purchase(order: str, user: str, at: datetime) -> ev.Event:
    line = {"product_id": "p", "quantity": 1, "unit_price": "1.00"}
    body = {"order_id": order, "user_id": user, "currency": "EUR", "lines": [line]}
    return ev.PurchaseCompleted.create(body, producer="t", occurred_at=at)


def test_the_oracle_applies_refunds_cancellations_and_erasure() -> None:
    events = [
        _purchase("o1", "u1", AT),
        _purchase("o2", "u2", AT - timedelta(hours=2)),
        _purchase("o3", "u3", AT),
        ev.OrderRefunded.create(
            {
                "refund_id": "r",
                "order_id": "o1",
                "user_id": "u1",
                "lines": [{"product_id": "p", "quantity": 1}],
            },
            producer="t",
        ),
        ev.OrderCancelled.create({"order_id": "o3", "user_id": "u3"}, producer="t"),
        _purchase("o4", "u4", AT),
        ev.UserErased.create({"user_id": "u4"}, producer="t"),
    ]
    now = int(AT.timestamp() * 1000) + 1
    assert Oracle(events).bought("p", now) == {"1h": 0, "24h": 1, "7d": 1}


def test_bench_scenarios_register_once_with_targets() -> None:
    import bench.__main__  # noqa: F401  (imports every scenario module)

    assert {"throughput", "burst_lag", "friends_bought"} <= set(REGISTRY)
    with pytest.raises(ValueError):
        scenario("throughput", "again")(lambda env, quick: Result("", {}))
    result = Result(
        "x", {"rate": 25_000, "p99": 3.0}, [Target("rate", ">=", 20_000), Target("p99", "<", 2)]
    )
    assert result.verdicts() == {"rate >= 20000": True, "p99 < 2": False}
