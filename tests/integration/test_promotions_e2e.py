"""Issue #17's "done when", through the public APIs of the session stack (real broker, Redis, the
four services and the counters worker with its reward relay): a shop creates "share and get 10 %
off when 3 friends buy"; a user shares; three different users buy through the link, and the
sharer once through her own link (which does not count); the sharer's progress reads 3/3 and one
coupon exists, emitted once; a refund of one of those purchases before redemption withdraws it.
Then the reward comes back with a fourth buyer and is redeemed, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from contracts import events as ev
from contracts.topics import REWARDS
from socialproof.settings import Settings
from tests.support.services import api, topic_events
from tests.support.storefront import order, product, publish, viewer_token
from tests.support.waiting import wait_for
from tools.devstack import Stack


@pytest.fixture
def catalog(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "catalog", service_token) as client:
        yield client


@pytest.fixture
def shop_notifier(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    """The notifier with the service token: the shop's view of every sharer's progress."""
    with api(stack, "notifier", service_token) as client:
        yield client


@pytest.fixture
def social(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "social", service_token) as client:
        yield client


def progress(shop_notifier: httpx.Client, promotion: str, user: str) -> dict:
    response = shop_notifier.get(
        f"/v1/promotions/{promotion}/progress", params={"user_id": user}
    )
    assert response.status_code == 200, response.text
    return response.json()


def coupon_status(orders_api: httpx.Client, code: str) -> str | None:
    response = orders_api.get(f"/v1/coupons/{code}")
    return response.json()["status"] if response.status_code == 200 else None


def with_coupon(
    orders_api: httpx.Client, user: str, item: str, code: str, price: str
) -> httpx.Response:
    line = {"product_id": item, "quantity": 1, "unit_price": price}
    body = {"user_id": user, "currency": "EUR", "lines": [line], "coupon": code}
    return orders_api.post("/v1/orders", json=body)


def reward_events(settings: Settings, reward_id: str) -> list[ev.Event]:
    return [e for e in topic_events(settings, REWARDS, reward_id) if e is not None]


def test_share_to_unlock_through_the_public_apis(
    stack: Stack,
    settings: Settings,
    catalog: httpx.Client,
    social: httpx.Client,
    orders_api: httpx.Client,
    notifier_api: httpx.Client,
    shop_notifier: httpx.Client,
    service_token: str,
    uid,
) -> None:
    item, promo = uid("p"), uid("promo")
    ana, ben, cara, dan, eve = (uid(n) for n in ("ana", "ben", "cara", "dan", "eve"))
    publish(settings, product(item))
    now = datetime.now(UTC)

    # Given a shop's promotion: 10 % off for the sharer when 3 friends buy through her link
    created = catalog.post(
        "/v1/promotions",
        json={
            "id": promo,
            "product_id": item,
            "title": "Share and get 10% off",
            "sharer_reward": {"kind": "percent", "value": 10},
            "goal": {"buyers": 3},
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(days=7)).isoformat(),
        },
    )
    assert created.status_code == 201, created.text
    assert catalog.get(f"/v1/promotions/{promo}").json()["status"] == "active"

    # And Ana shares the product: the answer carries her link token
    shared = social.post(
        "/v1/shares", json={"user_id": ana, "product_id": item, "channel": "link"}
    )
    assert shared.status_code == 201, shared.text
    token = shared.json()["link_token"]
    assert token.startswith("lk-") and ana not in token

    # When Ana buys through her own link, then Ben, Cara and Dan through it
    order(orders_api, ana, item, referral=token)
    placed = {user: order(orders_api, user, item, referral=token) for user in (ben, cara, dan)}

    # Then her progress reads 3/3 (her own purchase does not count) and one coupon is earned
    wait_for(
        lambda: progress(shop_notifier, promo, ana)["buyers"] == 3
        and [r["status"] for r in progress(shop_notifier, promo, ana)["rewards"]] == ["earned"],
        20,
        "the sharer's progress at 3/3 with a reward earned",
        interval=0.1,
    )
    state = progress(shop_notifier, promo, ana)
    assert state["goal"] == 3 and state["remaining"] == 0
    reward = state["rewards"][0]
    code = reward["coupon"]
    # And the orders service turned the reward into a coupon, emitted exactly once
    wait_for(lambda: coupon_status(orders_api, code) == "earned", 20, "the coupon at orders")
    emitted = reward_events(settings, reward["reward_id"])
    assert [e.event_type for e in emitted] == ["promotion.reward_earned"]
    assert emitted[0].payload.user_id == ana and emitted[0].payload.coupon == code
    # And the product's proof says 3 bought through friends' shares
    proof = notifier_api.get(f"/v1/proof/products/{item}").json()
    assert proof["bought_via_shares"] == {"24h": 3, "7d": 3}
    # And the sharer reads the same progress with her own viewer token, another viewer cannot
    own = viewer_token(stack, service_token, ana)
    other = viewer_token(stack, service_token, ben)
    with httpx.Client(base_url=stack.url("notifier"), timeout=10) as public:
        mine = public.get(
            f"/v1/promotions/{promo}/progress",
            params={"user_id": ana},
            headers={"Authorization": f"Bearer {own}"},
        )
        assert mine.status_code == 200 and mine.json()["buyers"] == 3
        theirs = public.get(
            f"/v1/promotions/{promo}/progress",
            params={"user_id": ana},
            headers={"Authorization": f"Bearer {other}"},
        )
        assert theirs.status_code == 403

    # When Ben's purchase is refunded before Ana redeems the coupon
    refunded = orders_api.post(f"/v1/orders/{placed[ben]['order_id']}/refunds", json={})
    assert refunded.status_code == 201, refunded.text
    # Then the reward is withdrawn, at the processor and at orders, and the proof follows
    wait_for(
        lambda: progress(shop_notifier, promo, ana)["buyers"] == 2
        and [r["status"] for r in progress(shop_notifier, promo, ana)["rewards"]]
        == ["withdrawn"],
        20,
        "the reward withdrawn after the refund",
        interval=0.1,
    )
    wait_for(lambda: coupon_status(orders_api, code) == "withdrawn", 20, "coupon withdrawn")
    refused = with_coupon(orders_api, ana, item, code, "10.00")
    assert refused.status_code == 422 and "coupon" in refused.text
    assert notifier_api.get(f"/v1/proof/products/{item}").json()["bought_via_shares"]["24h"] == 2

    # When Eve buys through the link, the same reward is earned again, and Ana redeems it once
    order(orders_api, eve, item, referral=token)
    wait_for(lambda: coupon_status(orders_api, code) == "earned", 20, "the coupon earned again")
    redeemed = with_coupon(orders_api, ana, item, code, "20.00")
    assert redeemed.status_code == 201, redeemed.text
    assert Decimal(redeemed.json()["discount"]) == Decimal("2.00")
    again = with_coupon(orders_api, ana, item, code, "20.00")
    assert again.status_code in (409, 422) and "coupon" in again.text
    wait_for(
        lambda: [r["status"] for r in progress(shop_notifier, promo, ana)["rewards"]]
        == ["redeemed"],
        20,
        "the reward marked redeemed by the processor",
    )
    # Then the topic holds each transition once: earned, withdrawn, earned
    assert [e.event_type for e in reward_events(settings, reward["reward_id"])] == [
        "promotion.reward_earned",
        "promotion.reward_withdrawn",
        "promotion.reward_earned",
    ]
