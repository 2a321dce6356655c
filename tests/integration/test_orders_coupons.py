"""Referrals and coupons on the orders API (#17, steps 3 and 6) against the real broker and Redis.

The stream processor is not needed: the tests publish the reward transitions it would emit to
``promotions.rewards`` themselves, in Kafka transactions as its relay does (and plainly: the book
takes both), and wait for the orders service's book to show them (``GET /v1/coupons/{code}``).
Covered: the referral travels on the purchase event; malformed or unusable referrals and coupons
are 422 naming the field; an earned coupon redeems once with its discount (percent rounded to the
cent, fixed never above the total, fixed only in the order's currency), the event carries coupon
and discount, the coupon reads ``redeemed`` with its order; a second use, a withdrawn coupon and
another user's coupon are refused; a replay with the same Idempotency-Key answers the same and
redeems nothing twice; concurrent orders with one coupon: exactly one wins (the Redis hold); an
order the broker does not acknowledge (503, in process with a stub broker) gives the coupon back,
and a repeated Idempotency-Key is answered once, on one Redis and on a Redis Cluster.
A view over a transactional topic catches up past its commit markers and skips aborted records.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Producer, TopicPartition

from contracts import codec
from contracts.events import (
    Event,
    PurchaseCompleted,
    RewardEarned,
    RewardEarnedPayload,
    RewardSpec,
    RewardWithdrawn,
    RewardWithdrawnPayload,
)
from contracts.topics import ORDERS, REWARDS, Topic
from services.orders.app import create_app
from services.orders.coupons import CouponHolds, discount
from services.orders.settings import OrdersSettings
from socialproof.http import ServingStore
from socialproof.kafka import Delivered, PublishFailed, ensure_topics, topic_name
from socialproof.settings import Settings
from socialproof.topicview import Record, TopicView
from tests.support.services import api, run_async, topic_events
from tests.support.storefront import product
from tests.support.waiting import wait_for
from tools.devstack import Stack

PRICE = "19.99"


@pytest.fixture
def catalog(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "catalog", service_token) as client:
        yield client


@pytest.fixture
def orders(stack: Stack, service_token: str) -> Iterator[httpx.Client]:
    with api(stack, "orders", service_token) as client:
        yield client


class Rewards:
    """Publishes reward transitions as the processor's relay does: one Kafka transaction each
    (or plainly, or in a transaction that is aborted)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = topic_name(settings, REWARDS)
        self.plain = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        self.txn = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "transactional.id": f"tests-rewards-{uuid.uuid4().hex[:8]}",
            }
        )
        self.txn.init_transactions(20)
        self.earned_events: dict[str, RewardEarnedPayload] = {}

    def _send(self, event: Event, key: str, mode: str) -> None:
        producer = self.plain if mode == "plain" else self.txn
        if mode != "plain":
            producer.begin_transaction()
        producer.produce(self.topic, key=key.encode(), value=codec.encode(event))
        if mode == "commit":
            producer.commit_transaction(20)
        elif mode == "abort":
            producer.flush(20)
            producer.abort_transaction(20)
        else:
            assert producer.flush(20) == 0

    def earn(
        self, user_id: str, reward: RewardSpec, *, code: str | None = None, mode: str = "commit"
    ) -> str:
        code = code or f"SP-{secrets.token_hex(8).upper()}"
        payload = RewardEarnedPayload(
            reward_id=f"rw-{secrets.token_hex(12)}",
            promotion_id="promo-tests",
            role="sharer",
            user_id=user_id,
            coupon=code,
            reward=reward,
            buyers=3,
        )
        self.earned_events[code] = payload
        self._send(RewardEarned.create(payload, producer="tests"), payload.reward_id, mode)
        return code

    def withdraw(self, code: str, *, mode: str = "commit") -> None:
        p = self.earned_events[code]
        payload = RewardWithdrawnPayload(
            reward_id=p.reward_id,
            promotion_id=p.promotion_id,
            role=p.role,
            user_id=p.user_id,
            coupon=code,
            reason="refunded",
        )
        self._send(RewardWithdrawn.create(payload, producer="tests"), p.reward_id, mode)


@pytest.fixture
def rewards(settings: Settings, stack: Stack) -> Rewards:
    return Rewards(settings)


PERCENT_10 = RewardSpec(kind="percent", value=Decimal(10))


def new_product(catalog: httpx.Client, product_id: str) -> str:
    body = {"id": product_id, "name": "Mug", "price": PRICE, "currency": "EUR", "active": True}
    response = catalog.post("/v1/products", json=body)
    assert response.status_code == 201, response.text
    return product_id


def order_body(user_id: str, product_id: str, quantity: int = 1, **extra: object) -> dict:
    return {
        "user_id": user_id,
        "currency": "EUR",
        "lines": [{"product_id": product_id, "quantity": quantity, "unit_price": PRICE}],
        **extra,
    }


def coupon_status(orders: httpx.Client, code: str) -> str | None:
    response = orders.get(f"/v1/coupons/{code}")
    return response.json()["status"] if response.status_code == 200 else None


def wait_status(orders: httpx.Client, code: str, status: str) -> dict:
    wait_for(lambda: coupon_status(orders, code) == status, 10, f"coupon {code} {status}")
    return orders.get(f"/v1/coupons/{code}").json()


def refusal(response: httpx.Response, status: int = 422) -> tuple[list[str], list[str]]:
    """(fields, types) of a refusal with ``status``."""
    assert response.status_code == status, response.text
    fields = response.json()["fields"]
    return [f["field"] for f in fields], [f["type"] for f in fields]


def test_the_referral_travels_on_the_purchase_and_malformed_ones_are_refused(
    catalog: httpx.Client, orders: httpx.Client, settings: Settings, uid
) -> None:
    product, buyer = new_product(catalog, uid("p")), uid("u")
    token = "lk-" + "a2b3c4d5e6f7" * 2 + "qz"
    # When a buyer orders through a share's link
    placed = orders.post("/v1/orders", json=order_body(buyer, product, referral=token))
    # Then the answer and the purchase event carry the token (no coupon, no discount)
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert body["referral"] == token and body["coupon"] is None and body["discount"] is None
    assert body["subtotal"] == body["total"] == PRICE
    (event,) = topic_events(settings, ORDERS, body["order_id"])
    assert isinstance(event, PurchaseCompleted)
    assert event.payload.referral == token and event.payload.coupon is None
    assert orders.get(f"/v1/orders/{body['order_id']}").json()["referral"] == token
    # And malformed referrals and coupons are 422 naming the field
    for field, value in [
        ("referral", "lk-short"),
        ("referral", "LK-" + "a" * 26),
        ("referral", "lk-" + "a" * 25 + "1"),
        ("coupon", "SP-123"),
        ("coupon", "sp-" + "a" * 16),
    ]:
        fields, _ = refusal(
            orders.post("/v1/orders", json=order_body(buyer, product, **{field: value}))
        )
        assert fields == [field], (field, value)
    # And a well-formed coupon nobody earned is 422 naming coupon
    unknown = order_body(buyer, product, coupon="SP-" + "0" * 16)
    assert refusal(orders.post("/v1/orders", json=unknown)) == (["coupon"], ["unknown_coupon"])
    assert orders.get("/v1/coupons/SP-" + "0" * 16).status_code == 404


def test_an_earned_coupon_redeems_once_with_its_discount(
    catalog: httpx.Client, orders: httpx.Client, rewards: Rewards, settings: Settings, uid
) -> None:
    product, ana = new_product(catalog, uid("p")), uid("ana")
    # Given Ana earned a 10% coupon
    code = rewards.earn(ana, PERCENT_10)
    earned = wait_status(orders, code, "earned")
    assert earned["user_id"] == ana and earned["order_id"] is None
    assert earned["reward"]["kind"] == "percent" and Decimal(earned["reward"]["value"]) == 10
    # When she orders two mugs with it
    key = {"Idempotency-Key": uid("k")}
    body = order_body(ana, product, 2, coupon=code)
    placed = orders.post("/v1/orders", json=body, headers=key)
    # Then 10% of 39.98 comes off, rounded to the cent
    assert placed.status_code == 201, placed.text
    answer = placed.json()
    assert (answer["subtotal"], answer["discount"], answer["total"]) == ("39.98", "4.00", "35.98")
    assert answer["coupon"] == code
    # And the purchase event carries the coupon and the discount
    order_id = answer["order_id"]
    (event,) = topic_events(settings, ORDERS, order_id)
    assert isinstance(event, PurchaseCompleted)
    assert event.payload.coupon == code and event.payload.discount == Decimal("4.00")
    # And the coupon is redeemed by that order (at once: read-your-writes), and the order shows it
    redeemed = orders.get(f"/v1/coupons/{code}").json()
    assert (redeemed["status"], redeemed["order_id"]) == ("redeemed", order_id)
    view = orders.get(f"/v1/orders/{order_id}").json()
    assert (view["discount"], view["total"], view["coupon"]) == ("4.00", "35.98", code)
    # When the client retries with the same key: the same answer, nothing redeemed twice
    again = orders.post("/v1/orders", json=body, headers=key)
    assert again.status_code == 201 and again.json() == answer
    assert again.headers.get("Idempotent-Replay") == "true"
    assert [type(e) for e in topic_events(settings, ORDERS, order_id)] == [PurchaseCompleted]
    # But another order with the coupon is refused naming it
    second = orders.post("/v1/orders", json=order_body(ana, product, coupon=code))
    assert refusal(second) == (["coupon"], ["coupon_redeemed"])
    # And a withdrawal after redemption changes nothing: redeemed is final
    rewards.withdraw(code)
    later = rewards.earn(ana, PERCENT_10)  # once visible, the withdrawal before it was applied
    wait_status(orders, later, "earned")
    assert orders.get(f"/v1/coupons/{code}").json()["status"] == "redeemed"


def test_withdrawn_and_other_users_coupons_are_refused(
    catalog: httpx.Client, orders: httpx.Client, rewards: Rewards, uid
) -> None:
    product, ana, ben = new_product(catalog, uid("p")), uid("ana"), uid("ben")
    # Given a coupon of Ana's, published plainly (not in a transaction): the book takes it too,
    # after one in a transaction that was aborted, which the book never sees
    aborted = rewards.earn(ana, PERCENT_10, mode="abort")
    code = rewards.earn(ana, PERCENT_10, mode="plain")
    wait_status(orders, code, "earned")
    assert orders.get(f"/v1/coupons/{aborted}").status_code == 404
    assert refusal(orders.post("/v1/orders", json=order_body(ana, product, coupon=aborted))) == (
        ["coupon"],
        ["unknown_coupon"],
    )
    # Then Ben cannot redeem it
    bens = orders.post("/v1/orders", json=order_body(ben, product, coupon=code))
    fields, types = refusal(bens)
    assert (fields, types) == (["coupon"], ["not_owner"])
    assert ana not in bens.text  # whose it is is not told
    # When it is withdrawn (the purchases behind it were refunded)
    rewards.withdraw(code)
    withdrawn = wait_status(orders, code, "withdrawn")
    assert withdrawn["order_id"] is None
    # Then Ana cannot redeem it either
    anas = orders.post("/v1/orders", json=order_body(ana, product, coupon=code))
    assert refusal(anas) == (["coupon"], ["coupon_withdrawn"])
    # And when it is earned again, she can
    rewards.earn(ana, PERCENT_10, code=code)
    wait_status(orders, code, "earned")
    placed = orders.post("/v1/orders", json=order_body(ana, product, coupon=code))
    assert placed.status_code == 201 and placed.json()["discount"] == "2.00", placed.text


def test_fixed_discounts_never_exceed_the_total_and_need_the_order_currency(
    catalog: httpx.Client, orders: httpx.Client, rewards: Rewards, uid
) -> None:
    product, ana = new_product(catalog, uid("p")), uid("ana")
    five = rewards.earn(ana, RewardSpec(kind="fixed", value=Decimal(5), currency="EUR"))
    fifty = rewards.earn(ana, RewardSpec(kind="fixed", value=Decimal(50)))  # order's currency
    dollars = rewards.earn(ana, RewardSpec(kind="fixed", value=Decimal(5), currency="USD"))
    for code in (five, fifty, dollars):
        wait_status(orders, code, "earned")
    # A fixed amount comes off as it is
    placed = orders.post("/v1/orders", json=order_body(ana, product, coupon=five)).json()
    assert (placed["discount"], placed["total"]) == ("5.00", "14.99")
    # More than the total takes the total, never more
    placed = orders.post("/v1/orders", json=order_body(ana, product, coupon=fifty)).json()
    assert (placed["discount"], placed["total"]) == (PRICE, "0.00")
    # Another currency than the order's is refused naming coupon (and stays earned)
    other = orders.post("/v1/orders", json=order_body(ana, product, coupon=dollars))
    assert refusal(other) == (["coupon"], ["coupon_currency"])
    assert coupon_status(orders, dollars) == "earned"


def test_the_discount_rule() -> None:
    eur = "EUR"
    assert discount(PERCENT_10, Decimal("0.05"), eur) == Decimal("0.01")  # 0.005 rounds half up
    assert discount(RewardSpec(kind="percent", value=Decimal(150)), Decimal(8), eur) == 8
    assert discount(RewardSpec(kind="percent", value=Decimal("12.5")), Decimal(8), eur) == 1
    assert discount(RewardSpec(kind="fixed", value=Decimal(3)), Decimal(2), eur) == 2


def test_concurrent_orders_with_one_coupon_redeem_it_once(
    catalog: httpx.Client, orders: httpx.Client, rewards: Rewards, uid
) -> None:
    product, ana = new_product(catalog, uid("p")), uid("ana")
    code = rewards.earn(ana, PERCENT_10)
    wait_status(orders, code, "earned")

    # When six orders with the same coupon arrive at once (distinct Idempotency-Keys)
    def place(i: int) -> httpx.Response:
        return orders.post(
            "/v1/orders",
            json=order_body(ana, product, i + 1, coupon=code),
            headers={"Idempotency-Key": uid(f"k{i}")},
        )

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(place, range(6)))
    # Then exactly one is accepted; the others are refused naming the coupon
    accepted = [a for a in answers if a.status_code == 201]
    assert len(accepted) == 1, [a.text for a in answers]
    for refused in answers:
        if refused.status_code != 201:
            assert refused.status_code in (409, 422), refused.text
            assert [f["field"] for f in refused.json()["fields"]] == ["coupon"]
    # And the coupon names the accepted order
    final = orders.get(f"/v1/coupons/{code}").json()
    assert (final["status"], final["order_id"]) == ("redeemed", accepted[0].json()["order_id"])


def test_a_coupon_hold_is_single_use_and_only_its_order_releases_it(
    settings: Settings, namespace: str
) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        holds = CouponHolds(client, namespace, ttl_s=60)
        code = f"SP-{secrets.token_hex(8).upper()}"
        try:
            assert await holds.hold(code, "o-1") is None
            assert await holds.hold(code, "o-2") == "o-1"  # another order: refused
            assert await holds.hold(code, "o-1") is None  # the same order's retry holds it again
            await holds.release(code, "o-2")  # not its hold: nothing happens
            assert await holds.hold(code, "o-2") == "o-1"
            await holds.release(code, "o-1")  # its publish failed (503): free again
            assert await holds.hold(code, "o-2") is None
        finally:
            await client.aclose()

    run_async(scenario)


def settled(settings: Settings, topic: str) -> None:
    """Wait until the last transaction's markers are written (a commit returns once the
    coordinator decided; the markers follow): the partition's last stable offset is its end."""
    ends = {}
    for level in ("read_committed", "read_uncommitted"):
        ends[level] = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": "tests-unused",
                "isolation.level": level,
            }
        )

    def same() -> bool:
        tp = TopicPartition(topic, 0)
        stable, end = (
            c.get_watermark_offsets(tp, timeout=5, cached=False)[1] for c in ends.values()
        )
        return stable == end

    try:
        wait_for(same, 10, f"the markers of {topic}'s last transaction")
    finally:
        for c in ends.values():
            c.close()


def test_a_view_over_a_transactional_topic_catches_up_past_markers_and_skips_aborts(
    settings: Settings,
) -> None:
    topic = Topic(
        name=f"test.txn.{uuid.uuid4().hex[:8]}",
        key="n",
        key_of=lambda e: "",
        value_types=(),
        writer="tests",
        partitions=1,
    )
    ensure_topics(settings, [topic])
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "transactional.id": f"tests-view-{uuid.uuid4().hex[:8]}",
        }
    )
    producer.init_transactions(20)

    def transaction(values: list[bytes], commit: bool) -> None:
        producer.begin_transaction()
        for v in values:
            producer.produce(topic.name, value=v)
        if commit:
            producer.commit_transaction(20)
        else:
            producer.flush(20)
            producer.abort_transaction(20)

    # Given committed, aborted and committed transactions: the partition ends with a marker
    transaction([b"1", b"2"], True)
    transaction([b"x"], False)
    transaction([b"3"], True)
    settled(settings, topic.name)
    seen: list[bytes] = []

    def apply(record: Record) -> None:
        assert record.value is not None
        seen.append(record.value)

    async def scenario() -> None:
        view = TopicView(settings, [topic], apply, name="tests", isolation="read_committed")
        await view.start()
        try:
            # Then a read_committed view catches up, with the committed records only
            assert await view.wait_until(lambda: view.caught_up, 10)
            assert seen == [b"1", b"2", b"3"]
            # And another transaction is applied once committed: committing returns when the
            # coordinator decided, its markers (and so the record's visibility) follow a moment
            # later, so a read_committed sync() right after the commit may not include it yet
            await asyncio.to_thread(transaction, [b"4"], True)
            assert await view.wait_until(lambda: seen[-1:] == [b"4"], 5)
            assert await view.sync(5) and seen == [b"1", b"2", b"3", b"4"]
        finally:
            await view.stop()

    run_async(scenario)


class FailingBroker:
    """The app's publisher and view in one, for an in-process orders app: publishing fails (the
    broker did not acknowledge in time) until ``up``; then it is acknowledged."""

    def __init__(self) -> None:
        self.up = False
        self.published: list[Event] = []

    async def publish(self, event: Event) -> Delivered:
        if not self.up:
            raise PublishFailed("timed out")
        self.published.append(event)
        return Delivered("orders.events", 0, len(self.published) - 1)

    async def wait_delivered(self, delivered: Delivered, timeout: float = 5.0) -> bool:
        return True

    async def sync(self, timeout: float) -> bool:
        return True


@pytest.mark.parametrize("deployment", ["one", "cluster"])
def test_a_503_gives_the_coupon_back_and_a_repeated_key_is_answered_once(
    deployment: str, settings: Settings, namespace: str, uid, request: pytest.FixtureRequest
) -> None:
    """In process (the broker's outage is a stub; Redis is the real one: the session's single
    node, or the session's Redis Cluster, which the app detects from REDIS_URL alone): an order
    whose purchase the broker does not acknowledge releases its coupon for the next order, and a
    repeated Idempotency-Key is answered once (the same order, published once)."""
    url = (
        settings.redis_url if deployment == "one" else request.getfixturevalue("redis_cluster").url
    )
    ana, product_id, code = uid("ana"), uid("p"), f"SP-{secrets.token_hex(8).upper()}"
    app = create_app(
        OrdersSettings(
            service_token=settings.service_token, redis_url=url, redis_namespace=namespace
        )
    )
    book = app.state.book
    earned = RewardEarned.create(
        RewardEarnedPayload(
            reward_id="rw-503",
            promotion_id="promo-tests",
            role="sharer",
            user_id=ana,
            coupon=code,
            reward=PERCENT_10,
            buyers=3,
        ),
        producer="tests",
    )
    for topic, event in [(book.products_topic, product(product_id)), (book.rewards_topic, earned)]:
        book.apply(Record(topic, 0, 0, None, codec.encode(event)))
    broker = app.state.publisher = app.state.view = FailingBroker()
    token = settings.service_token.get_secret_value()  # type: ignore[union-attr]

    async def scenario() -> None:
        store = app.state.redis = ServingStore(app.state.settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://orders",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:

            async def place(key: str) -> httpx.Response:
                body = order_body(ana, product_id, coupon=code)
                return await client.post("/v1/orders", json=body, headers={"Idempotency-Key": key})

            try:
                # When the broker does not acknowledge the order: 503, not accepted
                first = await place("k-first")
                assert first.status_code == 503, first.text
                assert store.cluster is (deployment == "cluster")
                # Then the coupon is free again: another order takes it once the broker is back
                broker.up = True
                second = await place("k-second")
                assert second.status_code == 201 and second.json()["discount"] == "2.00"
                (event,) = broker.published
                assert isinstance(event, PurchaseCompleted) and event.payload.coupon == code
                # And the first order's retry finds it held by the second
                retry = await place("k-first")
                assert retry.status_code == 409 and retry.json()["error"] == "coupon_in_use"
                # And the second order's key repeated is answered once: the same answer again,
                # nothing published
                again = await place("k-second")
                assert again.status_code == 201 and again.json() == second.json()
                assert again.headers["Idempotent-Replay"] == "true"
                assert broker.published == [event]
            finally:
                redis = await store.client()
                if deployment == "cluster":  # (the namespace fixture cleans the single node)
                    async for key in redis.scan_iter(f"{namespace}:*"):
                        await redis.delete(key)
                await store.aclose()

    run_async(scenario)
