"""The social API against the real broker and Redis: symmetric friendships with first names,
one review per user and product, shares, privacy by default, erasure, and a restart that loses
nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from contracts.events import FriendshipAdded, FriendshipRemoved, ProductShared
from contracts.topics import FRIENDSHIPS, SHARES, USERS
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.support.services import api, restart_service, topic_events, topic_records
from tools.devstack import Stack, wait_ready


@pytest.fixture
def social(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "social", service_token) as client:
        yield client


def friend_ids(social: httpx.Client, user: str, **params) -> list[str]:
    response = social.get(f"/v1/users/{user}/friends", params=params)
    assert response.status_code == 200, response.text
    return [f["user_id"] for f in response.json()["items"]]


def fields_of(response: httpx.Response) -> list[str]:
    return [f["field"] for f in response.json()["fields"]]


def test_friendships_are_symmetric_and_repeating_a_put_or_delete_is_harmless(
    social: httpx.Client, settings: Settings, uid
) -> None:
    ana, ben = uid("ana"), uid("ben")
    assert social.put(f"/v1/users/{ben}/profile", json={"first_name": "Ben"}).status_code == 200
    # When Ana befriends Ben, twice
    for _ in range(2):
        added = social.put(f"/v1/users/{ana}/friends/{ben}")
        assert added.status_code == 200, added.text
        assert added.json() == {"user_id": ana, "friend_id": ben, "friends": True}
    # Then each is in the other's list, with the first name from the profile
    assert social.get(f"/v1/users/{ana}/friends").json()["items"] == [
        {"user_id": ben, "first_name": "Ben"}
    ]
    assert friend_ids(social, ben) == [ana]
    # When Ben ends it, twice
    for _ in range(2):
        removed = social.delete(f"/v1/users/{ben}/friends/{ana}")
        assert removed.status_code == 200 and removed.json()["friends"] is False
    # Then both lists are empty, and one added + one removed event were published
    assert friend_ids(social, ana) == [] and friend_ids(social, ben) == []
    key = "|".join(sorted((ana, ben)))
    assert [type(e) for e in topic_events(settings, FRIENDSHIPS, key)] == [
        FriendshipAdded,
        FriendshipRemoved,
    ]


def test_befriending_yourself_is_422_naming_friend_id(social: httpx.Client, uid) -> None:
    ana = uid("ana")
    response = social.put(f"/v1/users/{ana}/friends/{ana}")
    assert response.status_code == 422 and fields_of(response) == ["friend_id"]


def test_friend_lists_are_paged(social: httpx.Client, uid) -> None:
    ana = uid("ana")
    friends = sorted(uid("f") for _ in range(5))
    for friend in friends:
        assert social.put(f"/v1/users/{ana}/friends/{friend}").status_code == 200
    seen, cursor = [], None
    for _ in range(3):
        page = social.get(
            f"/v1/users/{ana}/friends",
            params={"limit": 2, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [f["user_id"] for f in page["items"]]
        cursor = page["next_cursor"]
    assert seen == friends and cursor is None


def test_one_review_per_user_and_product_posting_again_edits_it(social: httpx.Client, uid) -> None:
    ana, product = uid("ana"), uid("p")
    body = {"user_id": ana, "product_id": product, "rating": 4, "text": "Nice."}
    # When Ana reviews the product, then posts again
    first = social.post("/v1/reviews", json=body)
    assert first.status_code == 201, first.text
    second = social.post("/v1/reviews", json={**body, "rating": 2, "text": "Broke."})
    # Then the second post edited the first review
    assert second.status_code == 200, second.text
    review_id = first.json()["review_id"]
    assert second.json()["review_id"] == review_id
    assert second.json()["created_at"] == first.json()["created_at"]
    listed = social.get(f"/v1/products/{product}/reviews").json()["items"]
    assert [(r["review_id"], r["rating"], r["text"]) for r in listed] == [(review_id, 2, "Broke.")]
    # When it is edited through its id, then deleted
    edited = social.put(f"/v1/reviews/{review_id}", json={"rating": 5, "text": "Replaced."})
    assert edited.status_code == 200 and edited.json()["rating"] == 5
    assert social.get(f"/v1/reviews/{review_id}").json()["text"] == "Replaced."
    assert social.delete(f"/v1/reviews/{review_id}").status_code == 204
    # Then it is gone
    assert social.get(f"/v1/reviews/{review_id}").status_code == 404
    assert social.delete(f"/v1/reviews/{review_id}").status_code == 404
    assert social.get(f"/v1/products/{product}/reviews").json()["items"] == []


def test_invalid_reviews_are_refused_naming_the_field(social: httpx.Client, uid) -> None:
    good = {"user_id": uid("ana"), "product_id": uid("p"), "rating": 5, "text": ""}
    cases = {
        "rating": {**good, "rating": 6},
        "text": {**good, "text": "x" * 5001},
        "product_id": {k: v for k, v in good.items() if k != "product_id"},
    }
    for field, body in cases.items():
        response = social.post("/v1/reviews", json=body)
        assert response.status_code == 422 and field in fields_of(response), (field, response.text)
    assert social.post("/v1/reviews", json={**good, "text": "x" * 5000}).status_code == 201


def test_shares_name_a_channel_and_a_retried_share_counts_once(
    social: httpx.Client, settings: Settings, uid
) -> None:
    product = uid("p")
    body = {"user_id": uid("ana"), "product_id": product, "channel": "whatsapp"}
    key = {"Idempotency-Key": uid("k")}
    first = social.post("/v1/shares", json=body, headers=key)
    again = social.post("/v1/shares", json=body, headers=key)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    bad = social.post("/v1/shares", json={**body, "channel": "pigeon"})
    assert bad.status_code == 422 and fields_of(bad) == ["channel"]
    shares = topic_events(settings, SHARES, product)
    assert [type(e) for e in shares] == [ProductShared]
    assert shares[0].payload.share_id == first.json()["share_id"]


def test_privacy_is_off_by_default_and_set_per_user(
    social: httpx.Client, settings: Settings, uid
) -> None:
    ana = uid("ana")
    default = social.get(f"/v1/users/{ana}/privacy").json()
    assert default == {
        "user_id": ana,
        "share_purchases_with_friends": False,
        "show_in_activity_feed": False,
        "notify_on_questions": False,
        "chosen": False,
    }
    choice = {"share_purchases_with_friends": True, "show_in_activity_feed": False}
    put = social.put(f"/v1/users/{ana}/privacy", json=choice)
    assert put.status_code == 200 and put.json() == {
        **choice,
        "notify_on_questions": False,  # omitted: no
        "user_id": ana,
        "chosen": True,
    }
    assert social.get(f"/v1/users/{ana}/privacy").json() == put.json()
    # notes about questions on what she bought: on, then the same again (nothing new published)
    for _ in range(2):
        notes = social.put(f"/v1/users/{ana}/privacy", json={**choice, "notify_on_questions": True})
        assert notes.status_code == 200 and notes.json()["notify_on_questions"] is True
    assert social.get(f"/v1/users/{ana}/privacy").json()["notify_on_questions"] is True
    published = [e.payload for e in topic_events(settings, USERS, ana)]
    assert [p.notify_on_questions for p in published] == [False, True]
    partial = social.put(f"/v1/users/{ana}/privacy", json={"show_in_activity_feed": True})
    assert partial.status_code == 422 and fields_of(partial) == ["share_purchases_with_friends"]
    loose = social.put(f"/v1/users/{ana}/privacy", json={**choice, "notify_on_questions": "yes"})
    assert loose.status_code == 422 and fields_of(loose) == ["notify_on_questions"]


def test_the_shop_may_configure_other_privacy_defaults(
    stack: Stack, service_token: str, uid
) -> None:
    # Given a social service of a shop that opts users in to sharing purchases by default
    port = free_port()
    proc = ManagedProcess(
        name=f"social-{port}",
        argv=service_argv("social"),
        env={
            **stack.env,
            "SOCIALPROOF_SOCIAL_PORT": str(port),
            "SOCIALPROOF_DEFAULT_SHARE_PURCHASES": "true",
        },
        echo=False,
    ).start()
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", 60, "the extra social service", proc)
        # When a user who never chose is looked up
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/users/{uid('ana')}/privacy",
            headers={"Authorization": f"Bearer {service_token}"},
        )
        # Then the shop's defaults apply
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["share_purchases_with_friends"] is True
        assert body["show_in_activity_feed"] is False and body["chosen"] is False
    finally:
        proc.stop()


def test_profiles_hold_a_first_name(social: httpx.Client, uid) -> None:
    ana = uid("ana")
    assert social.get(f"/v1/users/{ana}/profile").status_code == 404
    assert social.put(f"/v1/users/{ana}/profile", json={"first_name": "Ana"}).status_code == 200
    assert social.get(f"/v1/users/{ana}/profile").json() == {"user_id": ana, "first_name": "Ana"}
    blank = social.put(f"/v1/users/{ana}/profile", json={"first_name": " "})
    assert blank.status_code == 422 and fields_of(blank) == ["first_name"]


def test_an_erased_user_disappears_and_cannot_be_written_again(
    social: httpx.Client, settings: Settings, uid
) -> None:
    # Given Ana with a name, consent, a friend and a review
    ana, ben, product = uid("ana"), uid("ben"), uid("p")
    social.put(f"/v1/users/{ana}/profile", json={"first_name": "Ana"})
    choice = {"share_purchases_with_friends": True, "show_in_activity_feed": True}
    social.put(f"/v1/users/{ana}/privacy", json=choice)
    social.put(f"/v1/users/{ana}/friends/{ben}")
    review = {"user_id": ana, "product_id": product, "rating": 5, "text": "Great"}
    review_id = social.post("/v1/reviews", json=review).json()["review_id"]
    # When Ana is erased (twice: harmless)
    for _ in range(2):
        erased = social.delete(f"/v1/users/{ana}")
        assert erased.status_code == 200 and erased.json() == {"user_id": ana, "erased": True}
    # Then she is gone from Ben's friends, her review, name and choices are gone
    assert friend_ids(social, ben) == []
    assert social.get(f"/v1/reviews/{review_id}").status_code == 404
    assert social.get(f"/v1/users/{ana}/profile").status_code == 404
    assert social.get(f"/v1/users/{ana}/privacy").json()["chosen"] is False
    # And writes about her are refused
    again = social.put(f"/v1/users/{ben}/friends/{ana}")
    assert again.status_code == 409 and again.json()["error"] == "user_erased"
    assert fields_of(again) == ["friend_id"]
    assert social.post("/v1/reviews", json=review).status_code == 409
    assert social.put(f"/v1/users/{ana}/profile", json={"first_name": "Ana"}).status_code == 409
    # And exactly one user.erased event was published
    erasures = [r for r in topic_records(settings, USERS, ana) if b"user.erased" in r.value]
    assert len(erasures) == 1


def test_every_write_and_personal_read_needs_the_token(stack: Stack, uid) -> None:
    ana, ben = uid("ana"), uid("ben")
    with api(stack, "social", None) as anonymous:
        calls = [
            anonymous.put(f"/v1/users/{ana}/friends/{ben}"),
            anonymous.delete(f"/v1/users/{ana}/friends/{ben}"),
            anonymous.get(f"/v1/users/{ana}/friends"),
            anonymous.post(
                "/v1/reviews", json={"user_id": ana, "product_id": "p", "rating": 5, "text": ""}
            ),
            anonymous.post(
                "/v1/shares", json={"user_id": ana, "product_id": "p", "channel": "link"}
            ),
            anonymous.put(
                f"/v1/users/{ana}/privacy",
                json={"share_purchases_with_friends": True, "show_in_activity_feed": True},
            ),
            anonymous.put(f"/v1/users/{ana}/profile", json={"first_name": "Ana"}),
            anonymous.delete(f"/v1/users/{ana}"),
        ]
        assert [c.status_code for c in calls] == [401] * len(calls)
        assert all(c.json()["error"] == "unauthorized" for c in calls)
        wrong = anonymous.delete(f"/v1/users/{ana}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        # public: a product's reviews, questions and answers
        assert anonymous.get("/v1/products/p/reviews").status_code == 200
        assert anonymous.get("/v1/products/p/questions").status_code == 200


def test_a_restarted_social_service_rebuilds_its_view_from_the_topics(
    stack: Stack, social: httpx.Client, uid
) -> None:
    # Given friendships (one ended), a review, consent, a name and an erased user
    ana, ben, cem, gone, product = uid("ana"), uid("ben"), uid("cem"), uid("gone"), uid("p")
    social.put(f"/v1/users/{ben}/profile", json={"first_name": "Ben"})
    for friend in (ben, cem, gone):
        social.put(f"/v1/users/{ana}/friends/{friend}")
    social.delete(f"/v1/users/{ana}/friends/{cem}")
    social.delete(f"/v1/users/{gone}")
    social.post("/v1/reviews", json={"user_id": ana, "product_id": product, "rating": 3})
    social.put(
        f"/v1/users/{ana}/privacy",
        json={"share_purchases_with_friends": True, "show_in_activity_feed": False},
    )
    reads = [
        f"/v1/users/{ana}/friends",
        f"/v1/products/{product}/reviews",
        f"/v1/users/{ana}/privacy",
        f"/v1/users/{ben}/profile",
    ]
    before = [social.get(path).json() for path in reads]
    assert [f["user_id"] for f in before[0]["items"]] == [ben]
    # When the social process restarts
    restart_service(stack, "social")
    # Then every read answers the same and the erased user stays erased
    assert [social.get(path).json() for path in reads] == before
    assert social.put(f"/v1/users/{ana}/friends/{gone}").status_code == 409
