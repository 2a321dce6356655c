"""Referral links on shares (#17, step 2) against the real broker and Redis: ``POST /v1/shares``
answers an unguessable link token and the storefront link, the published share carries the token,
a retried share answers the same token, and link creation is limited per user and rolling hour
(429 with ``Retry-After`` naming the limit). The token and link makers are checked directly too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from contracts.events import ProductShared
from contracts.topics import SHARES
from services.social.api.shares import new_link_token, share_link
from services.social.settings import SocialSettings
from socialproof.settings import Settings
from tests.support.services import api, topic_events
from tools.devstack import Stack

TOKEN = re.compile(r"^lk-[a-z2-7]{26}$")


@pytest.fixture
def social(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "social", service_token) as client:
        yield client


def share(social: httpx.Client, user: str, product: str, **headers: str) -> httpx.Response:
    body = {"user_id": user, "product_id": product, "channel": "whatsapp"}
    return social.post("/v1/shares", json=body, headers=headers)


def test_link_tokens_are_130_random_bits_in_lower_base32() -> None:
    tokens = [new_link_token() for _ in range(2000)]
    assert all(TOKEN.match(t) for t in tokens)
    assert len(set(tokens)) == len(tokens)
    # every character position takes many values (no constant prefix, no derived part); the
    # first carries the top bits of 130 = 26 x 5, so it too spans the whole alphabet
    for i in range(3, 29):
        assert len({t[i] for t in tokens}) == 32, i


def test_the_link_adds_ref_to_the_storefront_url() -> None:
    token = new_link_token()
    assert share_link("http://127.0.0.1:8004/demo", "p1", token) == (
        f"http://127.0.0.1:8004/demo?ref={token}"
    )
    templated = share_link("https://shop.example/p/{product_id}?utm=s&ref=old", "mug 1", token)
    parts = urlsplit(templated)
    assert parts.path == "/p/mug%201"
    assert parse_qs(parts.query) == {"utm": ["s"], "ref": [token]}
    assert SocialSettings().storefront_url.startswith("http")


def test_a_share_answers_its_link_and_the_event_carries_the_token(
    social: httpx.Client, settings: Settings, uid
) -> None:
    product, ana = uid("p"), uid("ana")
    key = uid("k")
    # Given a share made with an Idempotency-Key, and retried
    first = share(social, ana, product, **{"Idempotency-Key": key})
    again = share(social, ana, product, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201, first.text
    body = first.json()
    # Then it answers a link token and the storefront link with ?ref=<token>, besides the share
    assert TOKEN.match(body["link_token"]), body
    assert parse_qs(urlsplit(body["link"]).query)["ref"] == [body["link_token"]]
    assert body["share_id"].startswith("s-") and body["user_id"] == ana
    # And the retry answers the same token
    assert again.json() == body and again.headers.get("Idempotent-Replay") == "true"
    # And another share of the same product by the same user is another link
    other = share(social, ana, product)
    assert other.status_code == 201 and other.json()["link_token"] != body["link_token"]
    # And the published shares carry their tokens, the retried one once
    events = topic_events(settings, SHARES, product)
    assert all(isinstance(e, ProductShared) for e in events)
    assert sorted(e.payload.link_token for e in events) == sorted(  # type: ignore[union-attr]
        [body["link_token"], other.json()["link_token"]]
    )


def test_link_creation_is_limited_per_user_and_hour(social: httpx.Client, uid) -> None:
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    limit = SocialSettings().share_links_per_hour  # the stack runs with the default (30)
    # Given Ana created as many links as the hour allows (one with an Idempotency-Key)
    keyed = share(social, ana, product, **{"Idempotency-Key": uid("k")})
    assert keyed.status_code == 201, keyed.text
    for _ in range(limit - 1):
        assert share(social, ana, product).status_code == 201
    # When she shares once more
    refused = share(social, ana, product)
    # Then it is 429 naming user_id and the limit, with when to retry
    assert refused.status_code == 429, refused.text
    error = refused.json()
    assert error["error"] == "rate_limited" and [f["field"] for f in error["fields"]] == ["user_id"]
    assert f"{limit} share links per rolling hour" in error["message"]
    assert 3000 < int(refused.headers["Retry-After"]) <= 3600
    # And a retry of an answered share is not a new link: it still answers
    replay = share(
        social, ana, product, **{"Idempotency-Key": keyed.request.headers["Idempotency-Key"]}
    )
    assert replay.status_code == 201 and replay.json() == keyed.json()
    # And Ben is not limited by Ana's links
    assert share(social, ben, product).status_code == 201
