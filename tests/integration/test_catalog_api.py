"""The catalog API against the real broker: products are created, read, listed, updated and
deleted through the compacted product topic, and survive a restart of the catalog process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from contracts.events import ProductDeleted, ProductUpserted
from contracts.topics import PRODUCTS
from socialproof.settings import Settings
from tests.support.services import api, restart_service, topic_events
from tools.devstack import Stack


@pytest.fixture
def catalog(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "catalog", service_token) as client:
        yield client


@pytest.fixture
def anonymous_catalog(stack: Stack) -> Iterator[httpx.Client]:
    with api(stack, "catalog", None) as client:
        yield client


def product_body(product_id: str | None = None, **overrides) -> dict:
    body = {
        "name": "Espresso cup",
        "description": "Stoneware, 90 ml",
        "price": "12.50",
        "currency": "EUR",
        "image_url": "https://shop.example/img/cup.jpg",
        "category": "kitchen",
        "active": True,
        **overrides,
    }
    if product_id is not None:
        body["id"] = product_id
    return body


def test_a_product_is_created_read_updated_and_deleted(
    catalog: httpx.Client, settings: Settings, uid
) -> None:
    # Given a new product id chosen by the client
    product = uid("p")
    # When it is created
    created = catalog.post("/v1/products", json=product_body(product))
    # Then the answer and a read right after it show every field
    assert created.status_code == 201, created.text
    expected = {**product_body(product)}
    assert created.json() == expected
    assert catalog.get(f"/v1/products/{product}").json() == expected
    # When its price changes
    updated = catalog.put(f"/v1/products/{product}", json=product_body(price="9.90"))
    assert updated.status_code == 200, updated.text
    assert catalog.get(f"/v1/products/{product}").json()["price"] == "9.90"
    # When it is deleted
    assert catalog.delete(f"/v1/products/{product}").status_code == 204
    # Then it is gone, and deleting again is a 404
    gone = catalog.get(f"/v1/products/{product}")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert catalog.delete(f"/v1/products/{product}").status_code == 404
    # And the topic holds upserted, upserted, deleted and a tombstone under the product's key
    events = topic_events(settings, PRODUCTS, product)
    assert [type(e) for e in events] == [
        ProductUpserted,
        ProductUpserted,
        ProductDeleted,
        type(None),
    ]
    assert str(events[1].payload.price) == "9.90"


def test_an_id_is_generated_when_the_client_gives_none(catalog: httpx.Client) -> None:
    created = catalog.post("/v1/products", json=product_body())
    assert created.status_code == 201
    product = created.json()["id"]
    assert product.startswith("p-")
    assert catalog.get(f"/v1/products/{product}").status_code == 200


def test_creating_an_existing_id_is_harmless_when_equal_and_a_conflict_otherwise(
    catalog: httpx.Client, settings: Settings, uid
) -> None:
    product = uid("p")
    assert catalog.post("/v1/products", json=product_body(product)).status_code == 201
    # a retried create with the same body: 200, nothing new published
    again = catalog.post("/v1/products", json=product_body(product))
    assert again.status_code == 200 and again.json()["id"] == product
    # another product under the same id: 409 in the shared error shape
    clash = catalog.post("/v1/products", json=product_body(product, name="Other"))
    assert clash.status_code == 409 and clash.json()["error"] == "product_exists"
    assert len(topic_events(settings, PRODUCTS, product)) == 1


def test_the_list_pages_by_id_and_filters_by_category(catalog: httpx.Client, uid) -> None:
    # Given five products of a fresh category and one of another
    category = uid("cat")
    ids = sorted(uid("p") for _ in range(5))
    for product in ids:
        body = product_body(product, category=category)
        assert catalog.post("/v1/products", json=body).status_code == 201
    catalog.post("/v1/products", json=product_body(uid("p"), category=uid("other")))
    # When the category is listed two at a time
    seen, cursor, pages = [], None, 0
    while True:
        params = {"category": category, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = catalog.get("/v1/products", params=params)
        assert page.status_code == 200, page.text
        seen += [p["id"] for p in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    # Then every product of the category comes exactly once, in id order, in three pages
    assert seen == ids and pages == 3


def test_invalid_products_are_refused_naming_the_field(catalog: httpx.Client, uid) -> None:
    cases = {
        "price": product_body(uid("p"), price=12.5),  # a JSON number, not a decimal string
        "currency": product_body(uid("p"), currency="XYZ"),  # not an ISO-4217 code
        "name": product_body(uid("p"), name=""),
        "image_url": product_body(uid("p"), image_url="javascript:alert(1)"),
        "id": product_body("has spaces"),
        "colour": {**product_body(uid("p")), "colour": "red"},  # unknown field
    }
    for field, body in cases.items():
        response = catalog.post("/v1/products", json=body)
        assert response.status_code == 422, (field, response.text)
        assert field in [f["field"] for f in response.json()["fields"]], response.text


def test_writes_need_the_service_token_and_reads_do_not(
    catalog: httpx.Client, anonymous_catalog: httpx.Client, uid
) -> None:
    product = uid("p")
    assert catalog.post("/v1/products", json=product_body(product)).status_code == 201
    missing = anonymous_catalog.post("/v1/products", json=product_body(uid("p")))
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    wrong = anonymous_catalog.delete(
        f"/v1/products/{product}", headers={"Authorization": "Bearer not-the-token"}
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert anonymous_catalog.put(f"/v1/products/{product}", json=product_body()).status_code == 401
    # reads are public, and the product is still there
    assert anonymous_catalog.get(f"/v1/products/{product}").status_code == 200


def test_a_body_over_the_limit_is_413(catalog: httpx.Client, uid) -> None:
    response = catalog.post("/v1/products", json=product_body(uid("p"), description="x" * 70_000))
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"


def test_a_restarted_catalog_rebuilds_its_products_from_the_topic(
    stack: Stack, catalog: httpx.Client, uid
) -> None:
    # Given a category with a created, an updated and a deleted product
    category = uid("cat")
    kept, changed, deleted = uid("p"), uid("p"), uid("p")
    for product in (kept, changed, deleted):
        catalog.post("/v1/products", json=product_body(product, category=category))
    catalog.put(f"/v1/products/{changed}", json=product_body(category=category, active=False))
    catalog.delete(f"/v1/products/{deleted}")
    before = catalog.get("/v1/products", params={"category": category}).json()
    assert [p["id"] for p in before["items"]] == sorted([kept, changed])
    # When the catalog process restarts
    restart_service(stack, "catalog")
    # Then it is ready only with its view caught up, and answers exactly as before
    ready = catalog.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["view"] == "ok"
    assert catalog.get("/v1/products", params={"category": category}).json() == before
    assert catalog.get(f"/v1/products/{changed}").json()["active"] is False
    assert catalog.get(f"/v1/products/{deleted}").status_code == 404
