"""A/B experiment definitions and assignment at the notifier (issue #18), against the session
stack's notifier, a second notifier process beside it and a third after it (a restart), on the
real broker: create, list, read, stop; 409 and 422 naming the field; the same visitor gets the
same variant from every process and after a restart; what the widget asks for a product
(product and category scopes, 204 otherwise). A product's category reaches the notifier the way
production files it: a catalog event, the stream processor, ``pcat`` in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts import events as ev
from services.notifier.experiment_schemas import ExperimentCreate
from services.notifier.experiments import assign
from socialproof.settings import Settings
from tests.conftest import SERVICE_TOKEN
from tests.support.storefront import extra_notifier, publish
from tests.support.waiting import wait_for
from tools.devstack import Stack

ADMIN = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
VARIANTS = [
    {"name": "control", "badge": "none"},
    {"name": "friends", "elements": ["friends", "bought"]},
    {"name": "counts", "elements": ["bought", "reviews"], "min_count": 5},
]


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("notifier"), timeout=10) as client:
        yield client


def body(uid, **fields: object) -> dict:
    return {
        "id": uid("exp"),
        "title": "Friends or counts?",
        "products": [uid("p")],
        "variants": VARIANTS,
        "split": [34, 33, 33],
        **fields,
    }


def create(api: httpx.Client, payload: dict) -> dict:
    answer = api.post("/v1/experiments", json=payload, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def listed(api: httpx.Client, **query: str) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": "100", **query, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/experiments", params=params, headers=ADMIN)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def visitors(n: int) -> list[str]:
    return [f"vis-{uuid.uuid4().hex[:12]}" for _ in range(n)]


def test_a_shop_creates_reads_lists_and_stops_an_experiment(api: httpx.Client, uid) -> None:
    payload = body(uid, attribution_window_h=48, minimum_detectable_effect=0.1)
    # Only with the service token
    assert api.post("/v1/experiments", json=payload).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert api.post("/v1/experiments", json=payload, headers=wrong).status_code == 403
    assert api.get("/v1/experiments").status_code == 401
    # When it is created
    before = datetime.now(UTC)
    made = create(api, payload)
    # Then the answer is the experiment, active from now
    assert made["id"] == made["experiment_id"] == payload["id"]
    assert made["status"] == "active" and made["stopped_at"] is None
    assert made["products"] == payload["products"] and made["category"] is None
    assert [v["name"] for v in made["variants"]] == ["control", "friends", "counts"]
    assert made["variants"][2] == {**VARIANTS[2], "badge": "show"}
    assert made["variants"][0] == {
        "name": "control",
        "badge": "none",
        "elements": None,
        "min_count": None,
    }
    assert (made["split"], made["attribution_window_h"]) == ([34, 33, 33], 48)
    assert made["minimum_detectable_effect"] == 0.1
    starts = datetime.fromisoformat(made["starts_at"])
    assert before - timedelta(seconds=1) <= starts <= datetime.now(UTC)
    # And a read right after sees it, alone and in the list
    read = api.get(f"/v1/experiments/{payload['id']}", headers=ADMIN)
    assert read.status_code == 200 and read.json() == made
    assert payload["id"] in [e["id"] for e in listed(api, status="active")]
    # When it is stopped (twice: the second changes nothing)
    stopped = api.post(f"/v1/experiments/{payload['id']}/stop", headers=ADMIN)
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped" and stopped.json()["stopped_at"] is not None
    again = api.post(f"/v1/experiments/{payload['id']}/stop", headers=ADMIN)
    assert again.json() == stopped.json()
    # Then it is listed as stopped, not active
    assert payload["id"] in [e["id"] for e in listed(api, status="stopped")]
    assert payload["id"] not in [e["id"] for e in listed(api, status="active")]
    # And unknown experiments are 404
    assert api.get(f"/v1/experiments/{uid('nope')}", headers=ADMIN).status_code == 404
    assert api.post(f"/v1/experiments/{uid('nope')}/stop", headers=ADMIN).status_code == 404


def test_an_id_is_taken_once_and_a_repeated_create_changes_nothing(api: httpx.Client, uid) -> None:
    payload = body(uid)
    made = create(api, payload)
    # the same definition again (a retried request, starts_at defaulted both times): 200
    repeat = api.post("/v1/experiments", json=payload, headers=ADMIN)
    assert repeat.status_code == 200, repeat.text
    assert repeat.json() == made
    # another definition under the same id: 409, nothing changes
    other = api.post("/v1/experiments", json={**payload, "split": [50, 25, 25]}, headers=ADMIN)
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "experiment_exists"
    assert [f["field"] for f in other.json()["fields"]] == ["id"]
    assert api.get(f"/v1/experiments/{payload['id']}", headers=ADMIN).json()["split"] == [
        34,
        33,
        33,
    ]
    # without an id one is made
    anonymous = {k: v for k, v in body(uid).items() if k != "id"}
    assert create(api, anonymous)["id"].startswith("exp-")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"split": [50, 50]}, "split"),
        ({"split": [40, 30, 20]}, "split"),
        ({"split": [0, 50, 50]}, "split[0]"),
        (
            {"variants": [VARIANTS[0], VARIANTS[1], {**VARIANTS[2], "name": "friends"}]},
            "variants[2].name",
        ),
        ({"variants": [{**VARIANTS[0], "name": "Control"}, *VARIANTS[1:]]}, "variants[0].name"),
        ({"products": None}, "products"),
        ({"category": "kitchen"}, "category"),
        (
            {"variants": [{**VARIANTS[0], "elements": ["friends"]}, *VARIANTS[1:]]},
            "variants[0].elements",
        ),
        ({"variants": [{**VARIANTS[0], "min_count": 3}, *VARIANTS[1:]]}, "variants[0].min_count"),
        (
            {"variants": [VARIANTS[0], {"name": "x", "elements": ["stars"]}, VARIANTS[2]]},
            "variants[1].elements[0]",
        ),
        ({"variants": [VARIANTS[0]], "split": [100]}, "variants"),
        ({"attribution_window_h": 721}, "attribution_window_h"),
        ({"starts_at": "2026-12-01T10:00:00"}, "starts_at"),
        ({"id": "bad id"}, "id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_an_experiment_that_does_not_make_sense_is_refused_naming_the_field(
    api: httpx.Client, uid, change: dict, field: str
) -> None:
    answer = api.post("/v1/experiments", json={**body(uid), **change}, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert field in [f["field"] for f in answer.json()["fields"]], answer.text


def assignments(url: str, experiment_id: str, people: list[str]) -> dict[str, dict]:
    with httpx.Client(base_url=url, timeout=10) as client:
        out = {}
        for v in people:
            answer = client.get(f"/v1/experiments/{experiment_id}/assignment?visitor_id={v}")
            assert answer.status_code == 200, answer.text
            out[v] = answer.json()
        return out


def test_every_process_assigns_a_visitor_alike_and_a_restart_changes_nothing(
    stack: Stack, api: httpx.Client, uid
) -> None:
    people = visitors(60)
    with extra_notifier(stack) as second:
        # Given an experiment created on one process while another runs
        payload = body(uid)
        create(api, payload)
        # When both are asked at once (the other learns it from the topic)
        here = assignments(stack.url("notifier"), payload["id"], people)
        there = assignments(second, payload["id"], people)
    # Then they agree, with each other and with the formula
    assert here == there
    fields = ExperimentCreate.model_validate(payload).fields(payload["id"], datetime.now(UTC))
    for v, got in here.items():
        variant = assign(fields, v)
        assert got == {
            "experiment_id": payload["id"],
            "variant": variant.name,
            "badge": variant.badge,
            "elements": variant.elements,
            "min_count": variant.min_count,
            "status": "active",
        }
    assert {a["variant"] for a in here.values()} == {"control", "friends", "counts"}
    # And a process started afterwards (a restart replays the topic) agrees too
    with extra_notifier(stack) as restarted:
        assert assignments(restarted, payload["id"], people) == here
        ready = httpx.get(f"{restarted}/readyz", timeout=5).json()
        assert ready["checks"]["experiments"] == "ok"
    # the assignment of an unknown experiment, or of a bad visitor id, is refused
    assert (
        api.get(f"/v1/experiments/{uid('x')}/assignment?visitor_id=vis-12345678").status_code == 404
    )
    bad = api.get(f"/v1/experiments/{payload['id']}/assignment?visitor_id=no")
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "visitor_id"


def product_experiment(api: httpx.Client, product: str, visitor: str) -> httpx.Response:
    return api.get(f"/v1/products/{product}/experiment", params={"visitor_id": visitor})


def test_the_widget_learns_a_products_experiment_by_product_or_category(
    api: httpx.Client, settings: Settings, uid
) -> None:
    listed_p, in_cat, outside, later_p = uid("p"), uid("p"), uid("p"), uid("p")
    category = uid("cat")
    # Given a product filed under a category (the catalog's event, through the processor)
    publish(
        settings,
        ev.ProductUpserted.create(
            {
                "product_id": in_cat,
                "name": "Cup",
                "price": "9.00",
                "currency": "EUR",
                "category": category,
            },
            producer="catalog",
        ),
    )
    by_product = create(api, body(uid, products=[listed_p]))
    by_category = create(api, body(uid, products=None, category=category, split=[50, 25, 25]))
    create(
        api,
        body(
            uid, products=[later_p], starts_at=(datetime.now(UTC) + timedelta(days=1)).isoformat()
        ),
    )
    v = visitors(1)[0]
    # When the widget asks for a listed product: the experiment and the visitor's variant
    answer = product_experiment(api, listed_p, v)
    assert answer.status_code == 200, answer.text
    expected = assignments(str(api.base_url), by_product["id"], [v])[v]
    assert answer.json() == expected
    # and for a product of the category, once the processor filed it there
    found = wait_for(
        lambda: (r := product_experiment(api, in_cat, v)).status_code == 200 and r.json(),
        15,
        f"{in_cat} to be in category {category}'s experiment",
        interval=0.05,
    )
    assert found == assignments(str(api.base_url), by_category["id"], [v])[v]
    # Then a product in no experiment, or in one not started yet, answers 204
    assert product_experiment(api, outside, v).status_code == 204
    assert product_experiment(api, later_p, v).status_code == 204
    # And once the experiment stops, its product answers 204 too
    assert api.post(f"/v1/experiments/{by_product['id']}/stop", headers=ADMIN).status_code == 200
    assert product_experiment(api, listed_p, v).status_code == 204
    assert product_experiment(api, listed_p, "bad").status_code == 422
