"""Explanations of served figures (services/notifier/explain.py, explain_referrals.py) without
Redis: figure paths, user refs, the pure functions over facts (bought_via_shares' reasons too),
paging and cursors; and the endpoint's errors (400 naming the parameter, 401/403, 503 with Redis
down) on an app whose Redis does not answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.notifier.api import explain as explain_api
from services.notifier.explain import (
    BuyerFacts,
    InvalidCursor,
    Position,
    Purchase,
    QuestionFacts,
    Refunded,
    ReviewFacts,
    ShareFacts,
    UnknownFigure,
    UserRefs,
    explain_buyers,
    explain_questions,
    explain_reviews,
    explain_shares,
    page_of,
    parse_figure,
    ref_key,
)
from services.notifier.explain_referrals import Referred, ReferredBuyer, explain_via
from services.notifier.proof import ProofReader
from services.notifier.settings import NotifierSettings
from socialproof.http import create_service_app, lifespan_noop
from socialproof.processes import free_port

HOUR = 3_600_000
NOW = 1_750_000_000_000
refs = UserRefs(b"k" * 32)


# --- figures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "window", "channel", "verified", "bit"),
    [
        ("bought.1h", "bought", HOUR, None, False, 0),
        ("bought.24h", "bought", 24 * HOUR, None, False, 0),
        ("bought.7d", "bought", 168 * HOUR, None, False, 0),
        ("reviews.count", "reviews", None, None, False, 0),
        ("reviews.verified_count", "reviews", None, None, True, 0),
        ("shares.1h", "shares", HOUR, None, False, 0),
        ("shares.24h", "shares", 24 * HOUR, None, False, 0),
        ("shares.total", "shares", None, None, False, 0),
        ("shares.by_channel.email", "shares", None, "email", False, 0),
        ("questions.count", "questions", None, None, False, 1),
        ("questions.answered", "questions", None, None, False, 2),
        ("questions.answered_by_buyers", "questions", None, None, False, 4),
        ("bought_via_shares.24h", "via", 24 * HOUR, None, False, 0),
        ("bought_via_shares.7d", "via", 168 * HOUR, None, False, 0),
        ("friends_bought", "friends_bought", None, None, False, 0),
        ("friends_bought.count", "friends_bought", None, None, False, 0),
    ],
)
def test_every_served_figure_has_a_path(path, kind, window, channel, verified, bit) -> None:
    figure = parse_figure(path)
    assert (figure.path, figure.kind, figure.window_ms, figure.channel, figure.verified,
            figure.bit) == (path, kind, window, channel, verified, bit)
    assert figure.needs_viewer == (kind == "friends_bought")


@pytest.mark.parametrize(
    "path",
    [
        "bought", "bought.2h", "reviews.average", "shares.by_channel.pigeon", "as_of", "",
        "bought_via_shares", "bought_via_shares.1h",
    ],
)
def test_an_unknown_figure_is_named_with_the_known_ones(path: str) -> None:
    with pytest.raises(UnknownFigure) as caught:
        parse_figure(path)
    message = str(caught.value)
    if path.endswith("pigeon"):
        assert "'pigeon'" in message and "email" in message
    else:
        assert repr(path) in message and "bought.24h" in message


# --- user refs -----------------------------------------------------------------------------------


def test_user_refs_are_stable_keyed_hashes_never_the_id() -> None:
    a, b = UserRefs(b"a" * 32), UserRefs(b"b" * 32)
    assert a("ana") == a("ana") == UserRefs(b"a" * 32)("ana")
    assert a("ana") != a("ben") and a("ana") != b("ana")
    assert "ana" not in a("ana") and a("ana").startswith("u_") and len(a("ana")) == 34


def test_the_ref_key_comes_from_the_viewer_secret_else_the_service_token() -> None:
    token, secret = SecretStr("service-token-0123456789"), SecretStr("viewer-secret-0123456789")
    assert ref_key(secret, token) == ref_key(secret, None) != ref_key(None, token)
    assert ref_key(None, token) not in (token.get_secret_value().encode(),)
    with pytest.raises(ValueError, match="SERVICE_TOKEN"):
        ref_key(None, None)


# --- the pure functions --------------------------------------------------------------------------


def test_bought_counts_each_buyer_once_by_their_latest_kept_purchase() -> None:
    ana = BuyerFacts(
        "ana", NOW - 10,
        kept=(Purchase("o1", NOW - 5 * HOUR, "e1"), Purchase("o2", NOW - 10, "e2")),
        refunded=(Refunded("o3", NOW - 20, "e3", cancelled=False),),
    )
    ben = BuyerFacts("ben", NOW - 2 * HOUR, kept=(Purchase("o4", NOW - 2 * HOUR, None),))
    events, excluded = explain_buyers([ana, ben], refs, window_start=NOW - HOUR)
    assert [(e["event_id"], e["order_id"], e["user_ref"]) for e in events] == [
        ("e2", "o2", refs("ana"))
    ]
    assert events[0]["occurred_at"] == "2025-06-15T15:06:39.990Z"
    assert [(e["event_id"], e["reason"]) for e in excluded] == [
        ("e1", "repeat_purchase"), ("e3", "refunded"), (None, "outside_window")
    ]
    assert excluded[1]["cancelled"] is False
    # the same facts over 24 h: both count
    events, _ = explain_buyers([ana, ben], refs, window_start=NOW - 24 * HOUR)
    assert [e["order_id"] for e in events] == ["o2", "o4"]


def test_friends_bought_shows_only_consenting_friends() -> None:
    ana = BuyerFacts("ana", NOW, kept=(Purchase("o1", NOW, "e1"),))
    cleo = BuyerFacts("cleo", NOW, kept=(Purchase("o2", NOW, "e2"),))
    dan = BuyerFacts("dan", None, refunded=(Refunded("o3", NOW, "e3", cancelled=True),))
    events, excluded = explain_buyers([ana, cleo, dan], refs, counted={"ana"})
    assert [e["user_ref"] for e in events] == [refs("ana")]
    assert excluded == [
        {"event_id": "e2", "reason": "no_consent"}, {"event_id": "e3", "reason": "refunded"}
    ]


def test_reviews_deleted_and_unverified_are_excluded_with_their_reason() -> None:
    reviews = [
        ReviewFacts("ana", True, 5, NOW, "r1", verified=True),
        ReviewFacts("ben", True, 3, NOW - 1, "r2", verified=False),
        ReviewFacts("cleo", False, 0, NOW - 2, "r3", verified=False),
    ]
    events, excluded = explain_reviews(reviews, refs, verified=False)
    assert [e["event_id"] for e in events] == ["r1", "r2"]
    assert [(e["event_id"], e["reason"]) for e in excluded] == [("r3", "deleted")]
    events, excluded = explain_reviews(reviews, refs, verified=True)
    assert [e["event_id"] for e in events] == ["r1"] and events[0]["rating"] == 5
    assert [(e["event_id"], e["reason"]) for e in excluded] == [
        ("r2", "not_verified"), ("r3", "deleted")
    ]


def test_shares_outside_the_window_are_excluded() -> None:
    shares = [ShareFacts("s1", "ana", "x", NOW, "e1"), ShareFacts("s2", "ben", "x", NOW - HOUR - 1,
                                                                    "e2")]
    events, excluded = explain_shares(shares, refs, window_start=NOW - HOUR)
    assert [e["share_id"] for e in events] == ["s1"] and events[0]["channel"] == "x"
    assert [(e["share_id"], e["reason"]) for e in excluded] == [("s2", "outside_window")]
    events, excluded = explain_shares(shares, refs)
    assert len(events) == 2 and excluded == []


def test_questions_without_the_figures_bit_are_excluded() -> None:
    questions = [QuestionFacts("q1", "ana", NOW, "e1", True),
                 QuestionFacts("q2", None, NOW, "e2", False)]
    events, excluded = explain_questions(questions, refs, bit=4)
    assert [e["question_id"] for e in events] == ["q1"]
    assert [(e["question_id"], e["reason"], e["user_ref"]) for e in excluded] == [
        ("q2", "no_buyer_answer", None)
    ]
    assert explain_questions(questions, refs, bit=2)[1][0]["reason"] == "unanswered"


def test_bought_via_shares_counts_the_credited_purchase_and_says_why_the_others_not() -> None:
    def bought(order, ms, sharer="ana", kept=True, cancelled=False):
        share = (f"s-{sharer}", NOW - 9 * HOUR, f"se-{sharer}") if sharer else (None, None, None)
        return Referred(order, ms, f"e-{order}", kept, cancelled, sharer, *share)

    dan = ReferredBuyer("dan", "o1", NOW - 2 * HOUR, (
        bought("o2", NOW - HOUR, sharer="ben"),  # after the credited one
        bought("o1", NOW - 2 * HOUR),
        bought("o3", NOW - 3 * HOUR, kept=False, cancelled=True),
        bought("o4", NOW - 4 * HOUR, sharer=None),
        bought("o5", NOW - 5 * HOUR, sharer="dan"),
    ))
    gus = ReferredBuyer("gus", "o6", NOW - 30 * HOUR, (bought("o6", NOW - 30 * HOUR),))
    eve = ReferredBuyer("eve", None, None, (bought("o7", NOW, sharer="eve"),))
    events, excluded = explain_via([dan, gus, eve], refs, window_start=NOW - 24 * HOUR)
    assert events == [{
        "event_id": "e-o1", "occurred_at": "2025-06-15T13:06:40.000Z", "user_ref": refs("dan"),
        "kind": "purchase", "order_id": "o1", "share_id": "s-ana", "sharer_ref": refs("ana"),
        "shared_at": "2025-06-15T06:06:40.000Z", "share_event_id": "se-ana",
    }]
    assert [(e["order_id"], e["reason"]) for e in excluded] == [
        ("o2", "not_first_touch"), ("o3", "refunded"), ("o4", "unknown_link"),
        ("o5", "self_referral"), ("o6", "outside_window"), ("o7", "self_referral"),
    ]
    assert excluded[0]["credited_order_id"] == "o1" and excluded[0]["sharer_ref"] == refs("ben")
    assert excluded[1]["cancelled"] is True
    assert "sharer_ref" not in excluded[2] and "share_id" not in excluded[2]
    # over 7 days gus counts too; a refunded purchase is refunded whatever its link
    events, _ = explain_via([dan, gus], refs, window_start=NOW - 168 * HOUR)
    assert [e["order_id"] for e in events] == ["o1", "o6"]
    lost = ReferredBuyer("kim", None, None, (bought("o8", NOW, sharer=None, kept=False),))
    assert explain_via([lost], refs, window_start=0)[1][0]["reason"] == "refunded"


def test_no_explanation_carries_a_user_id() -> None:
    buyers = [BuyerFacts("user-ana", NOW, kept=(Purchase("o1", NOW, "e1"),))]
    reviews = [ReviewFacts("user-ben", True, 4, NOW, "r1", verified=False)]
    shares = [ShareFacts("s1", "user-cleo", "x", NOW, "e")]
    via = [ReferredBuyer("user-dan", "o1", NOW, (
        Referred("o1", NOW, "e1", True, False, "user-eve", "s1", NOW, "e2"),
        Referred("o2", NOW, "e3", True, False, "user-dan", "s2", NOW, "e4"),
    ))]
    text = json.dumps(
        [explain_buyers(buyers, refs, window_start=0), explain_buyers(buyers, refs, counted=set()),
         explain_reviews(reviews, refs, verified=True), explain_shares(shares, refs),
         explain_via(via, refs, window_start=0)]
    )
    assert "user-" not in text


# --- paging --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40), st.integers(1, 7))
def test_pages_cover_the_sequence_once_in_order(scores: list[int], limit: int) -> None:
    items = sorted(enumerate(scores), key=lambda t: (t[1], t[0]), reverse=True)
    seen, start = [], None
    while True:
        page, start = page_of(items, lambda t: t[1], start, limit)
        assert len(page) <= limit
        seen += page
        if start is None:
            break
    assert seen == items


def test_the_cursor_round_trips_and_refuses_garbage() -> None:
    position = Position("bought.24h", NOW, 7, "1750000000000", 2, True, refs("v"))
    assert Position.decode(position.encode()) == position
    other_buyers = Position("bought_via_shares.7d", NOW, 7, "+inf", 0, True, None, phase=2)
    assert Position.decode(other_buyers.encode()) == other_buyers
    # a cursor given before phases existed (seven fields) is phase 1
    old = base64.urlsafe_b64encode(
        json.dumps(["bought.1h", NOW, 3, "17", 1, 1, None]).encode()
    ).decode().rstrip("=")
    assert Position.decode(old) == Position("bought.1h", NOW, 3, "17", 1, True, None)
    for bad in ("", "nope", Position("x", 1, 1, "a", 0, True).encode(),
                Position("x", 1, 1, "1", 0, True, phase=3).encode()):
        with pytest.raises(InvalidCursor):
            Position.decode(bad)


# --- the endpoint's errors -----------------------------------------------------------------------

TOKEN = "unit-test-token-0123456789"


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The explain router on the shared app factory, with a reader whose Redis is not there."""
    settings = NotifierSettings(service_token=TOKEN)
    app = create_service_app(
        service="notifier", settings=settings, description="t", lifespan=lifespan_noop,
        readiness=lambda app: {},
    )
    app.include_router(explain_api.router)
    redis = aioredis.Redis(
        port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    app.state.reader = ProofReader(redis, "t")
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def explain(client: TestClient, **params: str):
    return client.get("/v1/proof/products/p1/explain", params=params)


def test_an_unknown_figure_is_400_naming_figure(client: TestClient) -> None:
    response = explain(client, figure="bought.2h")
    assert response.status_code == 400
    assert response.json()["fields"][0]["field"] == "figure"
    assert "bought.24h" in response.json()["message"]


def test_friends_bought_needs_a_viewer_and_a_bad_cursor_is_named(client: TestClient) -> None:
    response = explain(client, figure="friends_bought")
    assert response.status_code == 400 and response.json()["fields"][0]["field"] == "viewer_id"
    response = explain(client, figure="bought.1h", cursor="garbage")
    assert response.status_code == 400 and response.json()["fields"][0]["field"] == "cursor"
    # a cursor into bought_via_shares' second phase (the other buyers) fits no other figure,
    # and no explanation without the excluded events
    for figure, with_excluded in (("bought.1h", True), ("bought_via_shares.24h", False)):
        cursor = Position(figure, NOW, 1, "+inf", 0, with_excluded, phase=2).encode()
        response = explain(client, figure=figure, cursor=cursor)
        assert response.status_code == 400 and response.json()["fields"][0]["field"] == "cursor"


def test_the_service_token_is_required(client: TestClient) -> None:
    del client.headers["Authorization"]
    assert explain(client, figure="bought.1h").status_code == 401
    wrong = client.get(
        "/v1/proof/products/p1/explain", params={"figure": "bought.1h"},
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong.status_code == 403


def test_redis_down_is_503_with_retry_after(client: TestClient) -> None:
    response = explain(client, figure="bought.24h")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "store_unavailable" and response.headers["retry-after"]
