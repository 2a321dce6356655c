"""The thin path end to end, with every part a real process: an order POSTed to the orders
service reaches the broker, the Faust worker counts it in Redis, the notifier serves it and
pushes it over SSE."""

from __future__ import annotations

import time

import httpx

from socialproof.settings import Settings
from tests.support.sse import SseClient
from tests.support.storefront import product as product_event
from tests.support.storefront import publish
from tests.support.waiting import wait_for
from tools.devstack import Stack


def catalogued(settings: Settings, *product_ids: str) -> None:
    """Orders only accept products the catalog published; put them on the product topic."""
    publish(settings, *(product_event(p) for p in product_ids))


def order_body(user_id: str, product_id: str, quantity: int = 1) -> dict:
    return {
        "user_id": user_id,
        "currency": "EUR",
        "lines": [{"product_id": product_id, "quantity": quantity, "unit_price": "19.99"}],
    }


def bought_24h(notifier_api: httpx.Client, product_id: str) -> int:
    response = notifier_api.get(f"/v1/proof/products/{product_id}")
    assert response.status_code == 200
    return response.json()["bought"]["24h"]


def test_an_accepted_order_shows_up_in_the_proof_within_one_second(
    orders_api: httpx.Client, notifier_api: httpx.Client, settings: Settings, uid
) -> None:
    # Given a product nobody bought yet
    product = uid("p")
    catalogued(settings, product)
    assert bought_24h(notifier_api, product) == 0
    # When a user orders it
    started = time.monotonic()
    response = orders_api.post("/v1/orders", json=order_body(uid("u"), product))
    # Then the order is accepted once the broker confirmed it
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["order_id"]
    # And the notifier serves the new count within a second
    wait_for(lambda: bought_24h(notifier_api, product) == 1, 1.0, "the purchase to be counted")
    elapsed = time.monotonic() - started
    proof = notifier_api.get(f"/v1/proof/products/{product}").json()
    assert proof["bought"] == {"1h": 1, "24h": 1, "7d": 1}
    assert proof["product_id"] == product and proof["as_of"]
    assert elapsed < 1.0


def test_distinct_buyers_count_once_however_often_they_buy(
    orders_api: httpx.Client, notifier_api: httpx.Client, settings: Settings, uid
) -> None:
    product, ana, ben = uid("p"), uid("ana"), uid("ben")
    catalogued(settings, product)
    for user in (ana, ana, ben):
        assert orders_api.post("/v1/orders", json=order_body(user, product)).status_code == 201
    wait_for(lambda: bought_24h(notifier_api, product) == 2, 2.0, "two distinct buyers")
    # nothing further arrives: the count stays at two distinct buyers
    last = orders_api.post("/v1/orders", json=order_body(ben, product))
    assert last.status_code == 201
    stream_marker = uid("p")
    catalogued(settings, stream_marker)
    orders_api.post("/v1/orders", json=order_body(ben, stream_marker))
    wait_for(lambda: bought_24h(notifier_api, stream_marker) == 1, 2.0, "a later order")
    assert bought_24h(notifier_api, product) == 2


def test_an_unknown_product_answers_zeros_not_404(notifier_api: httpx.Client, uid) -> None:
    response = notifier_api.get(f"/v1/proof/products/{uid('never-sold')}")
    assert response.status_code == 200
    body = response.json()
    assert body["bought"] == {"1h": 0, "24h": 0, "7d": 0}
    assert set(body) >= {"product_id", "bought", "reviews", "shares", "as_of"}


def test_an_sse_client_receives_the_change(
    stack: Stack, orders_api: httpx.Client, settings: Settings, uid
) -> None:
    product = uid("p")
    catalogued(settings, product)
    url = f"{stack.url('notifier')}/v1/proof/stream?products={product}"
    with SseClient(url) as sse:
        assert sse.status == 200
        # Given the current state first
        first = sse.next(timeout=5)
        assert first.event == "proof" and first.id
        assert first.json()["bought"]["24h"] == 0
        # When an order is accepted
        assert orders_api.post("/v1/orders", json=order_body(uid("u"), product)).status_code == 201
        # Then the stream pushes the new state
        update = sse.next_matching(lambda e: e.json()["bought"]["24h"] == 1, timeout=2)
        assert update.event == "proof"
        assert update.json()["product_id"] == product
        assert int(update.id) > int(first.id)


def test_sse_refuses_a_bad_product_list_naming_the_field(stack: Stack) -> None:
    response = httpx.get(f"{stack.url('notifier')}/v1/proof/stream?products=,", timeout=5)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "products"
