"""Questions and answers in the social API against the real broker and Redis: asking, answering,
helpful votes, acceptance, reports and the shop's moderation, the per-user hourly limit, answers
by verified buyers first, verified marks on reviews (503 rather than a guess when Redis is down),
and erasure.

A verified buyer is one the stream processor recorded a kept purchase for (``{ns}:ub:{p}|{u}``);
these tests write that key directly rather than placing orders and waiting for the worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis as redis_sync

from contracts import namespaces
from contracts.events import QaModerated
from contracts.layout import StoreLayout, resolve_shards
from contracts.topics import QUESTIONS
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.support.services import api, topic_events
from tests.support.waiting import wait_for
from tools.devstack import Stack, wait_ready


@pytest.fixture
def social(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "social", service_token) as client:
        yield client


@pytest.fixture
def bought(
    settings: Settings, redis_client: redis_sync.Redis
) -> Iterator[Callable[[str, str], None]]:
    """bought(product, user): the user has a kept purchase of the product, as the stream
    processor records it, in the namespace readers serve now."""
    written: list[str] = []

    def record(product_id: str, user_id: str) -> None:
        pointer = redis_client.hgetall(namespaces.pointer_key(settings.redis_namespace))
        active = namespaces.parse(pointer, settings.redis_namespace).active
        layout = StoreLayout(active, resolve_shards(pointer, active, cluster=False))
        key = layout.product_keys(product_id).user_buys(product_id, user_id)
        redis_client.hset(key, "o-test", int(time.time() * 1000))
        written.append(key)

    yield record
    if written:
        redis_client.delete(*written)


def fields_of(response: httpx.Response) -> list[str]:
    return [f["field"] for f in response.json()["fields"]]


def ask(social: httpx.Client, product: str, user: str, text: str = "Is it big?") -> str:
    response = social.post(
        f"/v1/products/{product}/questions", json={"user_id": user, "text": text}
    )
    assert response.status_code == 201, response.text
    return response.json()["question_id"]


def answer(social: httpx.Client, question: str, user: str, text: str = "Yes.") -> str:
    response = social.post(
        f"/v1/questions/{question}/answers", json={"user_id": user, "text": text}
    )
    assert response.status_code == 201, response.text
    return response.json()["answer_id"]


def vote(social: httpx.Client, answer_id: str, user: str, helpful: bool = True) -> httpx.Response:
    return social.post(f"/v1/answers/{answer_id}/votes", json={"user_id": user, "helpful": helpful})


def listed(social: httpx.Client, product: str, **params) -> list[dict]:
    response = social.get(f"/v1/products/{product}/questions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_ask_answer_vote_accept_and_verified_buyers_answers_rank_first(
    social: httpx.Client, bought, uid
) -> None:
    product = uid("p")
    ana, ben, cem, dan, eve, fay = (uid(n) for n in ("ana", "ben", "cem", "dan", "eve", "fay"))
    # Given Ana's question, asked twice with one Idempotency-Key: one question
    body = {"user_id": ana, "text": "  Does it fit a saucer?  "}
    key = {"Idempotency-Key": uid("k")}
    first = social.post(f"/v1/products/{product}/questions", json=body, headers=key)
    again = social.post(f"/v1/products/{product}/questions", json=body, headers=key)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and again.headers["Idempotent-Replay"] == "true"
    question = first.json()
    assert question["product_id"] == product and question["user_id"] == ana
    assert question["text"] == "Does it fit a saucer?"
    q = question["question_id"]
    # And four answers: Ben's (oldest), Cem's, Dan's, and Eve's, who bought the product (newest)
    a_ben, a_cem, a_dan, a_eve = (answer(social, q, u, f"by {u}") for u in (ben, cem, dan, eve))
    bought(product, eve)
    # When Cem's answer gets two helpful votes (Fay changes her mind once: one vote per user)
    assert vote(social, a_cem, fay, helpful=False).json()["helpful_votes"] == 0
    changed = vote(social, a_cem, fay)
    assert changed.status_code == 200 and changed.json()["helpful_votes"] == 1
    assert vote(social, a_cem, ben).json()["helpful_votes"] == 2
    assert vote(social, a_cem, ben).json()["helpful_votes"] == 2  # the same vote again
    # And Ana accepts Dan's answer (Ben may not: he did not ask), and the shop accepts it again
    not_asker = social.post(f"/v1/answers/{a_dan}/accept", json={"by": "asker", "user_id": ben})
    assert not_asker.status_code == 403 and not_asker.json()["error"] == "not_the_asker"
    assert fields_of(not_asker) == ["user_id"]
    for by in ({"by": "asker", "user_id": ana}, {"by": "shop"}):
        accepted = social.post(f"/v1/answers/{a_dan}/accept", json=by)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json() == {"answer_id": a_dan, "question_id": q, "accepted": True}
    # Then the answers rank: the verified buyer's, the accepted one, by helpful votes, by time
    [item] = listed(social, product)
    assert item["question_id"] == q and item["text"] == "Does it fit a saucer?"
    ranked = [(a["answer_id"], a["verified"], a["accepted"], a["helpful"]) for a in item["answers"]]
    assert ranked == [
        (a_eve, True, False, 0),
        (a_dan, False, True, 0),
        (a_cem, False, False, 2),
        (a_ben, False, False, 0),
    ]


def test_questions_list_newest_first_page_by_page_and_posting_is_limited_per_user(
    social: httpx.Client, uid
) -> None:
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    # Given Ana posted SOCIALPROOF_QA_POSTS_PER_HOUR (10) questions and answers in the hour
    asked = [ask(social, product, ana, f"question {i}") for i in range(9)]
    answer(social, ask(social, product, ben), ana)
    # When she asks or answers once more
    refused = [
        social.post(f"/v1/products/{product}/questions", json={"user_id": ana, "text": "one more"}),
        social.post(f"/v1/questions/{asked[0]}/answers", json={"user_id": ana, "text": "more"}),
    ]
    # Then both are 429 naming user_id, with when to retry, and nothing is published
    for response in refused:
        assert response.status_code == 429, response.text
        assert response.json()["error"] == "rate_limited" and fields_of(response) == ["user_id"]
        assert 3000 < int(response.headers["Retry-After"]) <= 3600
    # And Ben is not limited by Ana's posts
    ask(social, product, ben, "and mine?")
    # And the 11 questions list newest first, 4 per page
    seen, cursor = [], None
    for _ in range(3):
        page = social.get(
            f"/v1/products/{product}/questions",
            params={"limit": 4, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [item["text"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert cursor is None
    assert seen == ["and mine?", "Is it big?"] + [f"question {i}" for i in reversed(range(9))]


def test_invalid_requests_are_refused_naming_the_field(social: httpx.Client, uid) -> None:
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    q = ask(social, product, ana)
    a = answer(social, q, ben)
    cases = {
        ("text", f"/v1/products/{product}/questions"): {"user_id": ana, "text": "   "},
        ("text", f"/v1/questions/{q}/answers"): {"user_id": ben, "text": "x" * 2001},
        ("user_id", f"/v1/products/{product}/questions"): {"user_id": "no spaces", "text": "?"},
        ("helpful", f"/v1/answers/{a}/votes"): {"user_id": ana, "helpful": "yes"},
        ("user_id", f"/v1/answers/{a}/votes"): {"user_id": ben, "helpful": True},  # own answer
        ("user_id", f"/v1/answers/{a}/accept"): {"by": "asker"},
        ("by", f"/v1/answers/{a}/accept"): {"by": "anyone"},
        ("reason", f"/v1/answers/{a}/reports"): {"user_id": ana},
    }
    for (field, path), body in cases.items():
        response = social.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert fields_of(response) == [field], (path, body, response.text)
    # Unknown ids are 404
    unknown = [
        social.post(f"/v1/questions/{uid('q')}/answers", json={"user_id": ana, "text": "?"}),
        vote(social, uid("a"), ana),
        social.post(f"/v1/answers/{uid('a')}/accept", json={"by": "shop"}),
        social.post(f"/v1/questions/{uid('q')}/reports", json={"user_id": ana, "reason": "spam"}),
        social.post(f"/v1/answers/{uid('a')}/hide"),
    ]
    assert [r.status_code for r in unknown] == [404] * len(unknown)


def test_reports_hide_at_the_threshold_and_the_shop_has_the_last_word(
    social: httpx.Client, settings: Settings, uid
) -> None:
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    reporters = [uid("r") for _ in range(4)]
    q = ask(social, product, ana)
    a = answer(social, q, ben)

    def report(user: str, target: str = f"answers/{a}") -> httpx.Response:
        response = social.post(f"/v1/{target}/reports", json={"user_id": user, "reason": "rude"})
        assert response.status_code in (200, 404), response.text
        return response

    # When two users report Ben's answer, one of them twice: 2 reports, still shown
    for user in (reporters[0], reporters[1], reporters[1]):
        assert report(user).json()["hidden"] is False
    assert report(reporters[1]).json()["reports"] == 2
    # When a third user reports it (SOCIALPROOF_QA_REPORTS_TO_HIDE = 3): hidden
    third = report(reporters[2]).json()
    assert third["reports"] == 3 and third["hidden"] is True
    assert listed(social, product)[0]["answers"] == []
    assert vote(social, a, ana).status_code == 404  # hidden answers take no votes
    assert report(reporters[3]).status_code == 404
    # And the service published one qa.moderated saying why
    moderations = [
        e for e in topic_events(settings, QUESTIONS, product) if isinstance(e, QaModerated)
    ]
    assert [
        (m.payload.target, m.payload.target_id, m.payload.hidden, m.payload.reason)
        for m in moderations
    ] == [("answer", a, True, "reported")]
    # When the shop shows it again: shown, and further reports do not hide it
    shown = social.post(f"/v1/answers/{a}/show", json={"reason": "reviewed: fine"})
    assert shown.status_code == 200 and shown.json() == {
        "target": "answer",
        "target_id": a,
        "question_id": q,
        "hidden": False,
    }
    assert report(reporters[3]).json() == {
        "target": "answer",
        "target_id": a,
        "user_id": reporters[3],
        "reports": 4,
        "hidden": False,
    }
    assert [x["answer_id"] for x in listed(social, product)[0]["answers"]] == [a]
    # When the shop hides the question (twice: harmless): gone with its answers, no new answers
    for _ in range(2):
        hidden = social.post(f"/v1/questions/{q}/hide")
        assert hidden.status_code == 200 and hidden.json()["hidden"] is True
    assert listed(social, product) == []
    late = social.post(f"/v1/questions/{q}/answers", json={"user_id": ana, "text": "?"})
    assert late.status_code == 404
    assert report(ana, f"questions/{q}").status_code == 404
    # When it shows it again: back, with the answer
    assert social.post(f"/v1/questions/{q}/show").json()["hidden"] is False
    [item] = listed(social, product)
    assert item["question_id"] == q and [x["answer_id"] for x in item["answers"]] == [a]


def test_an_erased_users_questions_answers_and_votes_disappear(social: httpx.Client, uid) -> None:
    # Given Ana's question with Ben's answer, Ben's question with Ana's answer, Ana's vote
    product, ana, ben, cem = uid("p"), uid("ana"), uid("ben"), uid("cem")
    q_ana = ask(social, product, ana, "Ana asks")
    a_ben_on_ana = answer(social, q_ana, ben)
    q_ben = ask(social, product, ben, "Ben asks")
    answer(social, q_ben, ana)
    a_cem = answer(social, q_ben, cem)
    assert vote(social, a_cem, ana).json()["helpful_votes"] == 1
    # When Ana is erased
    assert social.delete(f"/v1/users/{ana}").status_code == 200
    # Then her question (with the answers to it), her answer and her vote are gone
    [item] = listed(social, product)
    assert item["question_id"] == q_ben
    assert [(a["user_id"], a["helpful"]) for a in item["answers"]] == [(cem, 0)]
    assert vote(social, a_ben_on_ana, cem).status_code == 404
    # And she can neither ask, answer, vote nor report any more
    refused = [
        social.post(f"/v1/products/{product}/questions", json={"user_id": ana, "text": "?"}),
        social.post(f"/v1/questions/{q_ben}/answers", json={"user_id": ana, "text": "!"}),
        vote(social, a_cem, ana),
        social.post(f"/v1/questions/{q_ben}/reports", json={"user_id": ana, "reason": "x"}),
    ]
    assert [r.status_code for r in refused] == [409] * len(refused)
    assert all(fields_of(r) == ["user_id"] for r in refused)


def test_reviews_are_marked_verified_when_the_author_kept_a_purchase(
    social: httpx.Client, bought, uid
) -> None:
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    for user in (ana, ben):
        review = {"user_id": user, "product_id": product, "rating": 4}
        assert social.post("/v1/reviews", json=review).status_code == 201
    bought(product, ben)
    reviews = social.get(f"/v1/products/{product}/reviews").json()["items"]
    assert {r["user_id"]: r["verified"] for r in reviews} == {ana: False, ben: True}


def test_without_redis_listings_say_503_rather_than_guess_verified(
    stack: Stack, social: httpx.Client, uid
) -> None:
    # Given a review and an answered question
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    social.post("/v1/reviews", json={"user_id": ana, "product_id": product, "rating": 5})
    answer(social, ask(social, product, ana), ben)
    # When a social service whose Redis does not answer has read them from the topics
    port = free_port()
    proc = ManagedProcess(
        name=f"social-{port}",
        argv=service_argv("social"),
        env={
            **stack.env,
            "SOCIALPROOF_SOCIAL_PORT": str(port),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
        echo=False,
    ).start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/healthz", 60, "the social service without Redis", proc)
        for path in (f"/v1/products/{product}/reviews", f"/v1/products/{product}/questions"):
            # (until its view has replayed them, the product has nothing to mark)
            response = wait_for(
                lambda path=path: non_empty_or_error(httpx.get(base + path)),
                20,
                f"{path} read",
                interval=0.1,
            )
            # Then the listings are 503 with Retry-After, not "verified": false
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "store_unavailable"
            assert response.headers["Retry-After"]
    finally:
        proc.stop()


def non_empty_or_error(response: httpx.Response) -> httpx.Response | None:
    return None if response.status_code == 200 and not response.json()["items"] else response
