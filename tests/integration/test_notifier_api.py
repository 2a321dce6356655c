"""The notifier's read API against the real stack: viewer tokens, friend data only for the
token's viewer, batch reads, trending, activity, caching headers, rate limits, and the demo
routes being off unless enabled."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from contracts.views import TRENDING_HOURS, TRENDING_WEIGHTS, Keys
from services.notifier.tokens import ViewerTokens, derive_secret
from socialproof.settings import Settings
from tests.support.storefront import (
    extra_notifier,
    friends,
    order,
    person,
    product,
    publish,
    viewer_token,
)
from tests.support.waiting import wait_for
from tools.devstack import Stack


def proof(notifier_api: httpx.Client, product_id: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = notifier_api.get(f"/v1/proof/products/{product_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_viewer_tokens_are_issued_only_with_the_service_token(
    stack: Stack, service_token: str
) -> None:
    url = f"{stack.url('notifier')}/v1/viewer-tokens"
    # Given no token / a wrong one, Then 401 / 403 in the shared error shape
    assert httpx.post(url, json={"viewer_id": "u1"}, timeout=5).status_code == 401
    wrong = httpx.post(
        url, json={"viewer_id": "u1"}, headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    # When the shop's backend asks with the service token
    started = time.time()
    ok = httpx.post(
        url,
        json={"viewer_id": "u1"},
        headers={"Authorization": f"Bearer {service_token}"},
        timeout=5,
    )
    # Then it gets a short-lived token naming that viewer
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["viewer_id"] == "u1" and body["token"].startswith("vt1.")
    from datetime import datetime

    lifetime = datetime.fromisoformat(body["expires_at"]).timestamp() - started
    assert 60 < lifetime <= 900 + 5
    # And a bad viewer id is named
    bad = httpx.post(
        url, json={"viewer_id": ""}, headers={"Authorization": f"Bearer {service_token}"}, timeout=5
    )
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "viewer_id"


def test_friend_counts_are_shown_only_to_the_viewer_the_token_names(
    stack: Stack,
    settings: Settings,
    orders_api: httpx.Client,
    notifier_api: httpx.Client,
    service_token: str,
    uid,
) -> None:
    # Given Ana, friends with Ben (who shares purchases) and Cleo (who does not), and Dan, a
    # stranger; Ben and Cleo bought the product
    ana, ben, cleo, dan, item = uid("ana"), uid("ben"), uid("cleo"), uid("dan"), uid("p")
    publish(
        settings,
        product(item),
        *person(ana, "Ana"),
        *person(ben, "Ben"),
        *person(cleo, "Cleo", shares=False),
        *person(dan, "Dan"),
        friends(ana, ben),
        friends(cleo, ana),
    )
    order(orders_api, ben, item)
    order(orders_api, cleo, item)
    wait_for(lambda: proof(notifier_api, item).json()["bought"]["24h"] == 2, 10, "two purchases")
    # When Ana asks with her token
    ana_token = viewer_token(stack, service_token, ana)
    mine = wait_for(
        lambda: (
            (r := proof(notifier_api, item, ana_token)).json()["friends_bought"]
            == {"count": 1, "names": ["Ben"]}
            and r
        ),
        10,
        "Ana's friend count",
    )
    # Then she sees Ben (who allows it) and not Cleo, and the answer is private
    assert mine.json()["friends_bought"] == {"count": 1, "names": ["Ben"]}
    assert mine.headers["cache-control"].startswith("private")
    # And the same token as a query parameter works alike (for EventSource and WebSocket)
    by_query = notifier_api.get(f"/v1/proof/products/{item}", params={"viewer_token": ana_token})
    assert by_query.json()["friends_bought"]["count"] == 1
    # When Dan asks with his own token, Then nothing about Ana's friends
    theirs = proof(notifier_api, item, viewer_token(stack, service_token, dan)).json()
    assert theirs["friends_bought"] == {"count": 0, "names": []}
    # And without a token there is no friend data at all, and the answer is publicly cacheable
    public = proof(notifier_api, item)
    assert "friends_bought" not in public.json()
    assert public.headers["cache-control"].startswith("public")
    assert "Authorization" in public.headers["vary"]


@pytest.mark.parametrize("case", ["tampered", "expired", "service token", "garbage"])
def test_bad_viewer_tokens_are_refused(
    stack: Stack, notifier_api: httpx.Client, service_token: str, case: str
) -> None:
    good = viewer_token(stack, service_token, "u1")
    head, payload, signature = good.split(".")
    token = {
        # the payload names another viewer, the signature is the original one
        "tampered": f"{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}"
        f".{signature}",
        # correctly signed (the documented fallback key: derived from the service token)
        "expired": ViewerTokens(derive_secret(service_token), 60).mint(
            "u1", now=time.time() - 3600
        )[0],
        "service token": service_token,
        "garbage": "vt1.x.y",
    }[case]
    for response in (
        notifier_api.get("/v1/proof/products/p1", headers={"Authorization": f"Bearer {token}"}),
        notifier_api.get("/v1/proof/products/p1", params={"viewer_token": token}),
        notifier_api.get("/v1/proof/stream", params={"products": "p1", "viewer_token": token}),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_viewer_token"


def test_batch_reads_answer_every_product_in_order(
    settings: Settings, orders_api: httpx.Client, notifier_api: httpx.Client, uid
) -> None:
    a, b, c = uid("a"), uid("b"), uid("c")
    publish(settings, product(b))
    order(orders_api, uid("u"), b)
    wait_for(lambda: proof(notifier_api, b).json()["bought"]["24h"] == 1, 10, "the purchase")
    response = notifier_api.get("/v1/proof/products", params={"ids": f"{a},{b},{c},{a}"})
    assert response.status_code == 200
    products = response.json()["products"]
    assert [p["product_id"] for p in products] == [a, b, c]
    assert [p["bought"]["24h"] for p in products] == [0, 1, 0]
    too_many = notifier_api.get(
        "/v1/proof/products", params={"ids": ",".join(f"p{i}" for i in range(101))}
    )
    assert too_many.status_code == 422 and too_many.json()["fields"][0]["field"] == "ids"


def test_etag_answers_not_modified_until_the_proof_changes(
    settings: Settings, orders_api: httpx.Client, notifier_api: httpx.Client, uid
) -> None:
    item = uid("p")
    first = proof(notifier_api, item)
    etag = first.headers["etag"]
    # Given nothing changed, When the client revalidates, Then 304 without a body
    again = notifier_api.get(f"/v1/proof/products/{item}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # When the product is bought, Then the ETag changes and the full answer comes back
    publish(settings, product(item))
    order(orders_api, uid("u"), item)
    changed = wait_for(
        lambda: (
            (
                r := notifier_api.get(f"/v1/proof/products/{item}", headers={"If-None-Match": etag})
            ).status_code
            == 200
            and r
        ),
        10,
        "a changed ETag",
    )
    assert changed.headers["etag"] != etag and changed.json()["bought"]["24h"] == 1


def test_trending_and_activity_show_recent_purchases(
    settings: Settings, orders_api: httpx.Client, notifier_api: httpx.Client, uid
) -> None:
    item, buyers = uid("hot"), [uid("u") for _ in range(5)]
    publish(
        settings,
        product(item),
        *[e for i, b in enumerate(buyers) for e in person(b, f"Buyer{i}", shares=i != 0)],
    )
    for buyer in buyers:
        order(orders_api, buyer, item)

    # 5 purchases this hour: 5 x the purchase weight x the newest hour's weight
    expected = len(buyers) * TRENDING_WEIGHTS["bought"] * TRENDING_HOURS

    def ranked() -> dict | None:
        listed = notifier_api.get("/v1/trending").json()["products"]
        mine = next((e for e in listed if e["product_id"] == item), None)
        if mine is None and len(listed) == 50 and listed[-1]["score"] >= expected:
            return {"crowded_out_by_50_busier_products": True}  # the session's other tests
        # all five purchases counted (one hour less weight for any counted just before the
        # hour turned)
        return mine if mine and mine["score"] >= expected - len(buyers) * 3 else None

    entry = wait_for(ranked, 10, "the product to trend with all its purchases")
    if "crowded_out_by_50_busier_products" not in entry:
        assert entry["rank"] >= 1 and entry["score"] <= expected
    everything = notifier_api.get("/v1/trending").json()["products"]
    assert [e["rank"] for e in everything] == list(range(1, len(everything) + 1))
    assert all(x["score"] >= y["score"] for x, y in zip(everything, everything[1:], strict=False))

    def feed() -> list[dict]:
        items = notifier_api.get("/v1/activity", params={"products": item}).json()["items"]
        return items if len(items) == 4 else []

    items = wait_for(feed, 10, "four visible activities (one buyer does not allow it)")
    assert {i["first_name"] for i in items} == {"Buyer1", "Buyer2", "Buyer3", "Buyer4"}
    assert all(i["kind"] == "bought" and i["product_id"] == item for i in items)
    times = [i["occurred_at"] for i in items]
    assert times == sorted(times, reverse=True)


def test_public_reads_are_rate_limited_per_client(stack: Stack) -> None:
    with extra_notifier(
        stack, SOCIALPROOF_RATE_LIMIT_PER_S="0.5", SOCIALPROOF_RATE_LIMIT_BURST="3"
    ) as url:
        statuses = [httpx.get(f"{url}/v1/proof/products/p1", timeout=5) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        limited = statuses[-1]
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        # health and metrics are not read API: never limited
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_the_demo_storefront_is_off_unless_enabled(stack: Stack) -> None:
    base = stack.url("notifier")
    assert httpx.get(f"{base}/demo", timeout=5).status_code == 404
    assert (
        httpx.post(f"{base}/demo/viewer-tokens", json={"viewer_id": "u1"}, timeout=5).status_code
        == 404
    )
    # nor do the demo's questions, which post with the service token
    assert httpx.get(f"{base}/demo/products/p1/questions", timeout=5).status_code == 404
    ask = {"user_id": "u1", "text": "Is it any good?"}
    assert httpx.post(f"{base}/demo/products/p1/questions", json=ask, timeout=5).status_code == 404
    # the widget, though, is always served, from here (no CDN)
    widget = httpx.get(f"{base}/widget.js", timeout=5)
    assert widget.status_code == 200 and widget.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "aria-live" in widget.text and "prefers-reduced-motion" in widget.text
    # no other origin is ever loaded: the only URL is the placeholder in the usage comment
    assert {u for u in re.findall(r"https?://[^\s\"']+", widget.text)} == {
        "https://NOTIFIER/widget.js"
    }
    assert '{"minCount":3,"tracking":true}' in widget.text  # the server's settings are injected


# --- issue #19: verified-purchase reviews and questions -------------------------------------

# 5 reviews (4+5+5+3+5), 3 by verified buyers (5+5+3): the hashes the processor writes
REVIEWS = {
    "count": 5, "sum": 22, "h1": 0, "h2": 0, "h3": 1, "h4": 1, "h5": 3,
    "vcount": 3, "vsum": 13, "vh1": 0, "vh2": 0, "vh3": 1, "vh4": 0, "vh5": 2,
}  # fmt: skip
VERIFIED = {"1": 0, "2": 0, "3": 1, "4": 0, "5": 2}


def test_proof_has_verified_reviews_and_answered_questions(
    stack: Stack, notifier_api: httpx.Client, redis_client, uid
) -> None:
    # Given a product's review and question counters as the processor writes them, and one
    # whose hashes an older processor wrote (no verified fields, no question counts)
    keys, item, older = Keys("sp"), uid("p"), uid("older")
    redis_client.hset(keys.reviews(item), mapping=REVIEWS)
    redis_client.hset(
        f"sp:qa:{item}", mapping={"questions": 7, "answered": 4, "answered_by_buyers": 2}
    )
    redis_client.hset(keys.reviews(older), mapping={"count": 2, "sum": 9, "h4": 1, "h5": 1})
    # When a storefront reads them
    body = proof(notifier_api, item).json()
    # Then every review counts, the verified ones are given beside, and the questions too
    assert body["reviews"] == {
        "count": 5,
        "average": 4.4,
        "histogram": {"1": 0, "2": 0, "3": 1, "4": 1, "5": 3},
        "verified_count": 3,
        "verified_average": 4.33,
        "verified_histogram": VERIFIED,
    }
    assert body["questions"] == {"count": 7, "answered": 4, "answered_by_buyers": 2}
    # And what an older processor never wrote reads as zeros; the batch read says the same
    (listed,) = notifier_api.get("/v1/proof/products", params={"ids": older}).json()["products"]
    assert listed["reviews"]["count"] == 2 and listed["reviews"]["verified_count"] == 0
    assert listed["reviews"]["verified_average"] is None
    assert listed["questions"] == {"count": 0, "answered": 0, "answered_by_buyers": 0}
    # When the shop shows verified reviews only, Then the summary is the verified one
    with extra_notifier(stack, SOCIALPROOF_REVIEWS_VERIFIED_ONLY="true") as url:
        shown = httpx.get(f"{url}/v1/proof/products/{item}", timeout=5).json()["reviews"]
        assert (shown["count"], shown["average"], shown["histogram"]) == (3, 4.33, VERIFIED)
        assert shown["verified_count"] == 3
        older_shown = httpx.get(f"{url}/v1/proof/products/{older}", timeout=5).json()
        assert older_shown["reviews"]["count"] == 0 and older_shown["reviews"]["average"] is None
