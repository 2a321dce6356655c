"""The catalog's promotions against the real broker: share-to-unlock promotions are created, read,
listed, changed and ended through ``catalog.promotions`` (the events decoded from the topic), every
invalid promotion is a 422 naming its field, writes need the service token, and a restarted
catalog replays the topic into the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from contracts.events import PromotionDefined, PromotionEnded
from contracts.topics import PROMOTIONS
from socialproof.settings import Settings
from tests.support.services import api, restart_service, topic_events
from tests.support.storefront import product, publish
from tools.devstack import Stack

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def catalog(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "catalog", service_token) as client:
        yield client


@pytest.fixture
def anonymous_catalog(stack: Stack) -> Iterator[httpx.Client]:
    with api(stack, "catalog", None) as client:
        yield client


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def promotion_body(promotion_id: str | None = None, **overrides) -> dict:
    body = {
        "product_id": "set-me",
        "title": "Share and get 10% off when 3 friends buy",
        "sharer_reward": {"kind": "percent", "value": 10},
        "goal": {"buyers": 3},
        "starts_at": iso(NOW - timedelta(hours=1)),
        "ends_at": iso(NOW + timedelta(days=7)),
        **overrides,
    }
    if promotion_id is not None:
        body["id"] = promotion_id
    return body


def a_product(catalog: httpx.Client, product_id: str, category: str = "kitchen") -> str:
    body = {"id": product_id, "name": "Cup", "price": "12.50", "currency": "EUR"}
    created = catalog.post("/v1/products", json={**body, "category": category})
    assert created.status_code == 201, created.text
    return product_id


def listed(catalog: httpx.Client, **params) -> list[str]:
    """Every id the list answers for ``params``, following the cursor two at a time."""
    seen, cursor = [], None
    while True:
        page = catalog.get(
            "/v1/promotions",
            params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        seen += [p["id"] for p in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return seen


def test_a_promotion_is_created_read_changed_and_ended(
    catalog: httpx.Client, settings: Settings, uid
) -> None:
    # Given a product published to the topic a moment ago (the catalog must wait for its view)
    item, promo = uid("p"), uid("promo")
    publish(settings, product(item))
    body = promotion_body(
        promo,
        product_id=item,
        buyer_reward={"kind": "fixed", "value": "5.00", "currency": "EUR"},
        max_rewards=50,
    )
    # When the shop creates the promotion
    created = catalog.post("/v1/promotions", json=body)
    # Then the answer and a read right after it show every field, active by the wall clock
    assert created.status_code == 201, created.text
    expected = {
        "id": promo,
        "product_id": item,
        "category": None,
        "title": body["title"],
        "sharer_reward": {"kind": "percent", "value": "10", "currency": None},
        "buyer_reward": {"kind": "fixed", "value": "5.00", "currency": "EUR"},
        "goal": {"buyers": 3},
        "starts_at": body["starts_at"],
        "ends_at": body["ends_at"],
        "max_rewards": 50,
        "status": "active",
        "ended_at": None,
    }
    assert created.json() == expected
    assert catalog.get(f"/v1/promotions/{promo}").json() == expected
    # And a retried create is harmless (200), another body under the id a conflict
    again = catalog.post("/v1/promotions", json=body)
    assert again.status_code == 200 and again.json() == expected
    clash = catalog.post("/v1/promotions", json={**body, "goal": {"buyers": 4}})
    assert clash.status_code == 409 and clash.json()["error"] == "promotion_exists"

    # When the shop raises the goal
    changed = {k: v for k, v in body.items() if k != "id"} | {"goal": {"buyers": 5}}
    put = catalog.put(f"/v1/promotions/{promo}", json=changed)
    assert put.status_code == 200, put.text
    assert catalog.get(f"/v1/promotions/{promo}").json() == {**expected, "goal": {"buyers": 5}}

    # When the shop ends it
    ended = catalog.delete(f"/v1/promotions/{promo}")
    # Then it stays readable as ended, since the DELETE
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended" and ended.json()["ended_at"] is not None
    ended_at = datetime.fromisoformat(ended.json()["ended_at"])
    assert NOW <= ended_at <= datetime.now(UTC)
    assert catalog.get(f"/v1/promotions/{promo}").json() == ended.json()
    # And ending it again changes nothing, while changing it is a conflict
    assert catalog.delete(f"/v1/promotions/{promo}").json() == ended.json()
    late = catalog.put(f"/v1/promotions/{promo}", json=changed)
    assert late.status_code == 409 and late.json()["error"] == "promotion_ended"

    # And the topic holds defined, defined (goal 5), ended under the promotion's key, once each
    events = topic_events(settings, PROMOTIONS, promo)
    assert [type(e) for e in events] == [PromotionDefined, PromotionDefined, PromotionEnded]
    first, second, end = events
    assert first.payload.product_id == item and first.payload.goal.buyers == 3
    assert first.payload.sharer_reward.value == Decimal(10)
    assert first.payload.buyer_reward.currency == "EUR" and first.payload.max_rewards == 50
    assert second.payload.goal.buyers == 5 and second.producer == "catalog"
    assert end.payload.promotion_id == promo and end.occurred_at == ended_at


def test_status_follows_the_wall_clock(catalog: httpx.Client, uid) -> None:
    # Given three promotions of one category: one to come, one running, one past its end
    category = uid("cat")
    periods = {
        "scheduled": (NOW + timedelta(days=1), NOW + timedelta(days=2)),
        "active": (NOW - timedelta(days=1), NOW + timedelta(days=1)),
        "ended": (NOW - timedelta(days=2), NOW - timedelta(days=1)),
    }
    ids = {}
    for status, (starts, ends) in periods.items():
        ids[status] = uid(status)
        body = promotion_body(
            ids[status],
            product_id=None,
            category=category,
            starts_at=iso(starts),
            ends_at=iso(ends),
        )
        created = catalog.post("/v1/promotions", json=body)
        # Then each answers its status, the past one without an ended_at (the shop did not end it)
        assert created.status_code == 201, created.text
        assert created.json()["status"] == status and created.json()["ended_at"] is None
        # And the list filters by it
    for status, promo in ids.items():
        assert listed(catalog, category=category, status=status) == [promo]
    # And a promotion past its end can no longer change
    body = promotion_body(product_id=None, category=category, title="Extended")
    late = catalog.put(f"/v1/promotions/{ids['ended']}", json=body)
    assert late.status_code == 409 and late.json()["error"] == "promotion_ended"


def test_the_list_pages_by_id_and_filters_by_product_and_category(
    catalog: httpx.Client, uid
) -> None:
    # Given a product of a fresh category, two promotions of the product, two of the category
    # and one of another product
    category = uid("cat")
    item, other = a_product(catalog, uid("p"), category), a_product(catalog, uid("p"))
    own = sorted(uid("promo") for _ in range(2))
    of_category = sorted(uid("promo") for _ in range(2))
    elsewhere = uid("promo")
    for promo in own:
        assert (
            catalog.post("/v1/promotions", json=promotion_body(promo, product_id=item)).status_code
            == 201
        )
    for promo in of_category:
        body = promotion_body(promo, product_id=None, category=category)
        assert catalog.post("/v1/promotions", json=body).status_code == 201
    assert (
        catalog.post("/v1/promotions", json=promotion_body(elsewhere, product_id=other)).status_code
        == 201
    )
    # When the promotions of the product are listed two at a time
    # Then its own and its category's come, exactly once each, in id order
    assert listed(catalog, product_id=item) == sorted(own + of_category)
    assert listed(catalog, category=category) == of_category
    assert elsewhere in listed(catalog, product_id=other)
    assert not set(own + of_category) & set(listed(catalog, product_id=other))
    # And the whole list holds them all
    assert set(own + of_category + [elsewhere]) <= set(listed(catalog))
    # And a bad filter is a 422 naming it
    bad = catalog.get("/v1/promotions", params={"status": "paused"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "status"


def test_invalid_promotions_are_refused_naming_the_field(catalog: httpx.Client, uid) -> None:
    item = a_product(catalog, uid("p"))
    start = NOW + timedelta(days=1)
    cases = {
        "both product_id and category": (
            "category",
            promotion_body(uid("promo"), product_id=item, category="kitchen"),
        ),
        "neither product_id nor category": (
            "product_id",
            promotion_body(uid("promo"), product_id=None),
        ),
        "ends_at before starts_at": (
            "ends_at",
            promotion_body(
                uid("promo"),
                product_id=item,
                starts_at=iso(start),
                ends_at=iso(start - timedelta(hours=1)),
            ),
        ),
        "ends_at equal to starts_at": (
            "ends_at",
            promotion_body(uid("promo"), product_id=item, starts_at=iso(start), ends_at=iso(start)),
        ),
        "percent 0": (
            "sharer_reward.value",
            promotion_body(
                uid("promo"), product_id=item, sharer_reward={"kind": "percent", "value": 0}
            ),
        ),
        "percent 101": (
            "buyer_reward.value",
            promotion_body(
                uid("promo"), product_id=item, buyer_reward={"kind": "percent", "value": "101"}
            ),
        ),
        "fixed without currency": (
            "sharer_reward.currency",
            promotion_body(
                uid("promo"), product_id=item, sharer_reward={"kind": "fixed", "value": "5.00"}
            ),
        ),
        "a JSON fraction": (
            "sharer_reward.value",
            promotion_body(
                uid("promo"), product_id=item, sharer_reward={"kind": "percent", "value": 12.5}
            ),
        ),
        "unknown product": ("product_id", promotion_body(uid("promo"), product_id=uid("nope"))),
        "bad promotion id": ("id", promotion_body("has spaces", product_id=item)),
        "bad product id": ("product_id", promotion_body(uid("promo"), product_id="a/b")),
        "no time zone": (
            "starts_at",
            promotion_body(uid("promo"), product_id=item, starts_at="2026-12-01T00:00:00"),
        ),
        "goal of none": (
            "goal.buyers",
            promotion_body(uid("promo"), product_id=item, goal={"buyers": 0}),
        ),
        "unknown field": (
            "colour",
            {**promotion_body(uid("promo"), product_id=item), "colour": "red"},
        ),
    }
    for case, (field, body) in cases.items():
        response = catalog.post("/v1/promotions", json=body)
        assert response.status_code == 422, (case, response.text)
        assert field in [f["field"] for f in response.json()["fields"]], (case, response.text)
        # and nothing was created
        if body.get("id") and body["id"] != "has spaces":
            assert catalog.get(f"/v1/promotions/{body['id']}").status_code == 404, case
    # And a PUT is checked the same way
    promo = uid("promo")
    assert (
        catalog.post("/v1/promotions", json=promotion_body(promo, product_id=item)).status_code
        == 201
    )
    put = catalog.put(f"/v1/promotions/{promo}", json=promotion_body(product_id=uid("nope")))
    assert put.status_code == 422 and put.json()["fields"][0]["field"] == "product_id"
    # And unknown promotions are 404
    assert catalog.get(f"/v1/promotions/{uid('nope')}").status_code == 404
    assert (
        catalog.put(
            f"/v1/promotions/{uid('nope')}", json=promotion_body(product_id=item)
        ).status_code
        == 404
    )
    assert catalog.delete(f"/v1/promotions/{uid('nope')}").status_code == 404


def test_writes_need_the_service_token_and_reads_do_not(
    catalog: httpx.Client, anonymous_catalog: httpx.Client, uid
) -> None:
    item, promo = a_product(catalog, uid("p")), uid("promo")
    assert (
        catalog.post("/v1/promotions", json=promotion_body(promo, product_id=item)).status_code
        == 201
    )
    body = promotion_body(uid("promo"), product_id=item)
    missing = anonymous_catalog.post("/v1/promotions", json=body)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    changed = promotion_body(product_id=item, title="Changed")
    assert anonymous_catalog.put(f"/v1/promotions/{promo}", json=changed).status_code == 401
    assert anonymous_catalog.delete(f"/v1/promotions/{promo}").status_code == 401
    wrong = anonymous_catalog.delete(
        f"/v1/promotions/{promo}", headers={"Authorization": "Bearer not-the-token"}
    )
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    # reads are public, and the promotion is unchanged and running
    read = anonymous_catalog.get(f"/v1/promotions/{promo}").json()
    assert read["status"] == "active" and read["title"] == body["title"]
    assert anonymous_catalog.get(f"/v1/promotions/{body['id']}").status_code == 404


def test_a_restarted_catalog_replays_its_promotions(
    stack: Stack, catalog: httpx.Client, uid
) -> None:
    # Given a category with a kept, a changed and an ended promotion
    category = uid("cat")
    kept, changed, ended = uid("promo"), uid("promo"), uid("promo")
    for promo in (kept, changed, ended):
        body = promotion_body(promo, product_id=None, category=category)
        assert catalog.post("/v1/promotions", json=body).status_code == 201
    body = promotion_body(product_id=None, category=category, max_rewards=7)
    assert catalog.put(f"/v1/promotions/{changed}", json=body).status_code == 200
    assert catalog.delete(f"/v1/promotions/{ended}").status_code == 200
    before = catalog.get("/v1/promotions", params={"category": category}).json()
    assert [p["id"] for p in before["items"]] == sorted([kept, changed, ended])
    # When the catalog process restarts
    restart_service(stack, "catalog")
    # Then it is ready only with its view caught up, and answers exactly as before
    ready = catalog.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["view"] == "ok"
    assert catalog.get("/v1/promotions", params={"category": category}).json() == before
    assert catalog.get(f"/v1/promotions/{changed}").json()["max_rewards"] == 7
    assert catalog.get(f"/v1/promotions/{ended}").json()["status"] == "ended"
