"""The storefront's visitor id on orders (#18) against the real broker: an order may carry the
widget's pseudonymous ``visitor_id`` (``SocialProof.visitorId()``), which travels on the
``purchase.completed`` event (the stream processor attributes the purchase to the badge variant
that visitor saw), comes back in the answer and on ``GET /v1/orders/{id}``; malformed ids are
422 naming the field; an order without one is unchanged (no field on the event); a replay with
the same Idempotency-Key answers the same, and another visitor id under that key is a conflict."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from contracts.events import PurchaseCompleted
from contracts.topics import ORDERS
from socialproof.settings import Settings
from tests.support.services import api, topic_events
from tools.devstack import Stack

VISITOR = "Vq3xT0b9R2mK8cLp5ZyW1a"  # what the widget makes: 16 random bytes, base64url


@pytest.fixture
def orders(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "orders", service_token) as client:
        yield client


@pytest.fixture
def item(stack: Stack, service_token: str, uid) -> str:
    product_id = uid("p")
    body = {"id": product_id, "name": "Mug", "price": "19.99", "currency": "EUR", "active": True}
    with api(stack, "catalog", service_token) as catalog:
        response = catalog.post("/v1/products", json=body)
    assert response.status_code == 201, response.text
    return product_id


def order_body(user_id: str, product_id: str, **extra: object) -> dict:
    return {
        "user_id": user_id,
        "currency": "EUR",
        "lines": [{"product_id": product_id, "quantity": 1, "unit_price": "19.99"}],
        **extra,
    }


def test_the_visitor_id_travels_on_the_purchase_and_comes_back(
    orders: httpx.Client, item: str, settings: Settings, uid
) -> None:
    # When a visitor of the storefront orders with the widget's visitor id
    key = {"Idempotency-Key": uid("k")}
    body = order_body(uid("u"), item, visitor_id=VISITOR)
    placed = orders.post("/v1/orders", json=body, headers=key)
    # Then the answer, the purchase event and the order's read carry it
    assert placed.status_code == 201, placed.text
    answer = placed.json()
    assert answer["visitor_id"] == VISITOR
    (event,) = topic_events(settings, ORDERS, answer["order_id"])
    assert isinstance(event, PurchaseCompleted) and event.payload.visitor_id == VISITOR
    assert orders.get(f"/v1/orders/{answer['order_id']}").json()["visitor_id"] == VISITOR
    # And a retry with the same key answers the same order; another visitor id under it conflicts
    again = orders.post("/v1/orders", json=body, headers=key)
    assert again.status_code == 201 and again.json() == answer
    other = orders.post(
        "/v1/orders", json={**body, "visitor_id": "another-visitor-0001"}, headers=key
    )
    assert other.status_code == 409, other.text


def test_an_order_without_a_visitor_id_has_none_and_malformed_ones_are_refused(
    orders: httpx.Client, item: str, settings: Settings, uid
) -> None:
    # An order without one: null in the answer and the read, absent from the event
    placed = orders.post("/v1/orders", json=order_body(uid("u"), item))
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    assert placed.json()["visitor_id"] is None
    assert orders.get(f"/v1/orders/{order_id}").json()["visitor_id"] is None
    (event,) = topic_events(settings, ORDERS, order_id)
    assert isinstance(event, PurchaseCompleted) and event.payload.visitor_id is None
    assert "visitor_id" not in event.payload.model_dump(exclude_none=True)
    # Malformed ids (contracts.events.VisitorId: 8-64 of A-Z a-z 0-9 _ -) are 422 naming the field
    for bad in ["short", "x" * 65, "has space12", "dot.ted.id", "ñandú-visitor", 12345678901]:
        refused = orders.post("/v1/orders", json=order_body(uid("u"), item, visitor_id=bad))
        assert refused.status_code == 422, (bad, refused.text)
        assert [f["field"] for f in refused.json()["fields"]] == ["visitor_id"], bad
