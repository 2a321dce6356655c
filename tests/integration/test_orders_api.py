"""The orders API against the real broker and Redis: validation against the product topic,
idempotent placing, reads, refunds, cancellation, and a restart that loses nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from contracts.events import OrderCancelled, OrderRefunded, PurchaseCompleted
from contracts.topics import ORDERS
from socialproof.settings import Settings
from tests.support.services import api, restart_service, topic_events
from tools.devstack import Stack


@pytest.fixture
def catalog(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "catalog", service_token) as client:
        yield client


@pytest.fixture
def orders(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "orders", service_token) as client:
        yield client


def new_product(catalog: httpx.Client, product_id: str, active: bool = True) -> str:
    body = {"id": product_id, "name": "Mug", "price": "19.99", "currency": "EUR", "active": active}
    response = catalog.post("/v1/products", json=body)
    assert response.status_code == 201, response.text
    return product_id


def order_body(user_id: str, *lines: tuple[str, int]) -> dict:
    return {
        "user_id": user_id,
        "currency": "EUR",
        "lines": [{"product_id": p, "quantity": q, "unit_price": "19.99"} for p, q in lines],
    }


def fields_of(response: httpx.Response) -> list[str]:
    return [f["field"] for f in response.json()["fields"]]


def test_a_product_created_a_moment_ago_can_be_ordered_and_read_back(
    catalog: httpx.Client, orders: httpx.Client, uid
) -> None:
    # Given a product the catalog created just now
    product = new_product(catalog, uid("p"))
    # When it is ordered straight away
    placed = orders.post("/v1/orders", json=order_body(uid("u"), (product, 2)))
    # Then the order is accepted with the interface the thin path relies on
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert body["status"] == "accepted" and body["order_id"].startswith("o-")
    assert body["total"] == "39.98" and body["lines"][0]["unit_price"] == "19.99"
    # And it can be read back at once
    read = orders.get(f"/v1/orders/{body['order_id']}")
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "accepted"
    assert read.json()["lines"] == [
        {"product_id": product, "quantity": 2, "unit_price": "19.99", "refunded_quantity": 0}
    ]


def test_unknown_and_inactive_products_are_422_naming_the_line(
    catalog: httpx.Client, orders: httpx.Client, uid
) -> None:
    known = new_product(catalog, uid("p"))
    inactive = new_product(catalog, uid("p"), active=False)
    unknown = orders.post("/v1/orders", json=order_body(uid("u"), (known, 1), (uid("nope"), 1)))
    assert unknown.status_code == 422, unknown.text
    assert fields_of(unknown) == ["lines[1].product_id"]
    assert unknown.json()["fields"][0]["type"] == "unknown_product"
    off = orders.post("/v1/orders", json=order_body(uid("u"), (inactive, 1)))
    assert off.status_code == 422 and off.json()["fields"][0]["type"] == "inactive_product"


def test_invalid_orders_are_refused_naming_the_field(
    catalog: httpx.Client, orders: httpx.Client, uid
) -> None:
    product = new_product(catalog, uid("p"))
    good = order_body(uid("u"), (product, 1))
    line = good["lines"][0]
    cases = {
        "lines[0].quantity": {**good, "lines": [{**line, "quantity": 0}]},
        "lines[0].unit_price": {**good, "lines": [{**line, "unit_price": 19.99}]},
        "currency": {**good, "currency": "EURO"},
        "lines": {**good, "lines": [line] * 101},  # more than 100 lines
        "user_id": {**good, "user_id": ""},
        "lines[1].product_id": {**good, "lines": [line, line]},  # the same product twice
    }
    for field, body in cases.items():
        response = orders.post("/v1/orders", json=body)
        assert response.status_code == 422, (field, response.text)
        assert field in fields_of(response), (field, response.text)
    empty = orders.post("/v1/orders", json={**good, "lines": []})
    assert empty.status_code == 422 and fields_of(empty) == ["lines"]


def test_an_idempotency_key_replays_the_first_answer_and_publishes_once(
    catalog: httpx.Client, orders: httpx.Client, settings: Settings, uid
) -> None:
    # Given an order placed with an Idempotency-Key
    product = new_product(catalog, uid("p"))
    body = order_body(uid("u"), (product, 1))
    key = {"Idempotency-Key": uid("key")}
    first = orders.post("/v1/orders", json=body, headers=key)
    assert first.status_code == 201, first.text
    # When the client retries with the same key and body
    again = orders.post("/v1/orders", json=body, headers=key)
    # Then it gets the same answer, and only one purchase was published
    assert again.status_code == 201 and again.json() == first.json()
    order_id = first.json()["order_id"]
    assert [type(e) for e in topic_events(settings, ORDERS, order_id)] == [PurchaseCompleted]
    # And the same key with another body is a conflict
    other = orders.post("/v1/orders", json=order_body(uid("u"), (product, 3)), headers=key)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    # And a malformed key is refused naming the header
    bad = orders.post("/v1/orders", json=body, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 422 and fields_of(bad) == ["Idempotency-Key"]


def test_refunds_per_line_and_whole_never_exceed_what_was_bought(
    catalog: httpx.Client, orders: httpx.Client, settings: Settings, uid
) -> None:
    # Given an order of 3 mugs and 1 cup
    mug, cup = new_product(catalog, uid("mug")), new_product(catalog, uid("cup"))
    order_id = orders.post("/v1/orders", json=order_body(uid("u"), (mug, 3), (cup, 1))).json()[
        "order_id"
    ]
    # When 2 mugs are refunded
    partial = orders.post(
        f"/v1/orders/{order_id}/refunds",
        json={"lines": [{"product_id": mug, "quantity": 2}], "reason": "chipped"},
    )
    assert partial.status_code == 201, partial.text
    assert partial.json()["lines"] == [{"product_id": mug, "quantity": 2}]
    state = orders.get(f"/v1/orders/{order_id}").json()
    assert state["status"] == "partially_refunded"
    assert [line["refunded_quantity"] for line in state["lines"]] == [2, 0]
    # Then refunding 2 more mugs is more than was bought: 409 naming the line
    over = orders.post(
        f"/v1/orders/{order_id}/refunds", json={"lines": [{"product_id": mug, "quantity": 2}]}
    )
    assert over.status_code == 409 and over.json()["error"] == "refund_exceeds_purchase"
    assert fields_of(over) == ["lines[0].quantity"]
    # And a product that is not in the order is a 422
    stranger = orders.post(
        f"/v1/orders/{order_id}/refunds",
        json={"lines": [{"product_id": uid("other"), "quantity": 1}]},
    )
    assert stranger.status_code == 422 and fields_of(stranger) == ["lines[0].product_id"]
    # When the rest of the order is refunded (no lines: everything left)
    rest = orders.post(f"/v1/orders/{order_id}/refunds", json={})
    assert rest.status_code == 201, rest.text
    assert sorted((x["product_id"], x["quantity"]) for x in rest.json()["lines"]) == sorted(
        [(mug, 1), (cup, 1)]
    )
    assert orders.get(f"/v1/orders/{order_id}").json()["status"] == "refunded"
    # Then nothing is left to refund, and exactly two refund events were published
    nothing = orders.post(f"/v1/orders/{order_id}/refunds", json={})
    assert nothing.status_code == 409 and nothing.json()["error"] == "nothing_to_refund"
    events = topic_events(settings, ORDERS, order_id)
    assert [type(e) for e in events] == [PurchaseCompleted, OrderRefunded, OrderRefunded]
    assert events[1].payload.refund_id == partial.json()["refund_id"]


def test_a_refund_retried_with_its_idempotency_key_is_applied_once(
    catalog: httpx.Client, orders: httpx.Client, settings: Settings, uid
) -> None:
    product = new_product(catalog, uid("p"))
    order_id = orders.post("/v1/orders", json=order_body(uid("u"), (product, 2))).json()["order_id"]
    body, key = {"lines": [{"product_id": product, "quantity": 1}]}, {"Idempotency-Key": uid("k")}
    first = orders.post(f"/v1/orders/{order_id}/refunds", json=body, headers=key)
    again = orders.post(f"/v1/orders/{order_id}/refunds", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert orders.get(f"/v1/orders/{order_id}").json()["lines"][0]["refunded_quantity"] == 1
    assert [type(e) for e in topic_events(settings, ORDERS, order_id)] == [
        PurchaseCompleted,
        OrderRefunded,
    ]


def test_cancelling_voids_the_order_once(
    catalog: httpx.Client, orders: httpx.Client, settings: Settings, uid
) -> None:
    product = new_product(catalog, uid("p"))
    order_id = orders.post("/v1/orders", json=order_body(uid("u"), (product, 2))).json()["order_id"]
    # When the order is cancelled, twice
    first = orders.post(f"/v1/orders/{order_id}/cancel", json={"reason": "payment failed"})
    again = orders.post(f"/v1/orders/{order_id}/cancel")
    # Then it is cancelled, fully "refunded" per line, and one cancellation was published
    assert first.status_code == again.status_code == 200, first.text
    assert (
        first.json()["status"] == "cancelled" and first.json()["cancel_reason"] == "payment failed"
    )
    assert first.json()["lines"][0]["refunded_quantity"] == 2
    assert [type(e) for e in topic_events(settings, ORDERS, order_id)] == [
        PurchaseCompleted,
        OrderCancelled,
    ]
    # And it can no longer be refunded
    refund = orders.post(f"/v1/orders/{order_id}/refunds", json={})
    assert refund.status_code == 409 and refund.json()["error"] == "order_cancelled"


def test_unknown_orders_are_404_and_every_endpoint_needs_the_token(
    stack: Stack, orders: httpx.Client, uid
) -> None:
    missing = uid("o")
    assert orders.get(f"/v1/orders/{missing}").status_code == 404
    assert orders.post(f"/v1/orders/{missing}/refunds", json={}).status_code == 404
    assert orders.post(f"/v1/orders/{missing}/cancel").status_code == 404
    with api(stack, "orders", None) as anonymous:
        calls = [
            anonymous.post("/v1/orders", json=order_body("u1", ("p1", 1))),
            anonymous.get(f"/v1/orders/{missing}"),
            anonymous.post(f"/v1/orders/{missing}/refunds", json={}),
            anonymous.post(f"/v1/orders/{missing}/cancel"),
        ]
        assert [c.status_code for c in calls] == [401] * 4
        wrong = anonymous.get(f"/v1/orders/{missing}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403


def test_a_restarted_orders_service_rebuilds_orders_and_products_from_the_topics(
    stack: Stack, catalog: httpx.Client, orders: httpx.Client, uid
) -> None:
    # Given an order with a partial refund, and a cancelled order
    product = new_product(catalog, uid("p"))
    refunded = orders.post("/v1/orders", json=order_body(uid("u"), (product, 2))).json()["order_id"]
    orders.post(
        f"/v1/orders/{refunded}/refunds", json={"lines": [{"product_id": product, "quantity": 1}]}
    )
    cancelled = orders.post("/v1/orders", json=order_body(uid("u"), (product, 1))).json()[
        "order_id"
    ]
    orders.post(f"/v1/orders/{cancelled}/cancel")
    before = {o: orders.get(f"/v1/orders/{o}").json() for o in (refunded, cancelled)}
    # When the orders process restarts
    restart_service(stack, "orders")
    # Then it answers the same, still refuses to refund more than was bought, and still knows
    # the product (an order for it is accepted at once)
    assert {o: orders.get(f"/v1/orders/{o}").json() for o in before} == before
    over = orders.post(
        f"/v1/orders/{refunded}/refunds", json={"lines": [{"product_id": product, "quantity": 2}]}
    )
    assert over.status_code == 409
    assert orders.post("/v1/orders", json=order_body(uid("u"), (product, 1))).status_code == 201
