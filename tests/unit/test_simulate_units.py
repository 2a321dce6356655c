"""The traffic simulator without services: which calls it makes (deterministic by seed) and that
it carries on through errors. Its run against the real stack is in
tests/integration/test_simulate.py."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

import services.notifier
from tools.loadgen import LoadGenerator
from tools.simulate import DEMO_PRODUCTS, Simulator, Targets, demo_catalog, demo_config
from tools.simulate_referrals import DEMO_PROMOTIONS, Referrals

TARGETS = Targets("http://catalog", "http://orders", "http://social", token="t" * 20)


class Recorder:
    """A fake of the three services that accepts everything (or fails as told) and records."""

    def __init__(self, fail_first: int = 0, failure: str = "500", links: bool = False) -> None:
        self.calls: list[tuple[str, str, dict | None, dict]] = []
        self.fail_first = fail_first
        self.failure = failure
        self.orders = 0
        #: answer shares with a link token, as the social service does (issue #17)
        self.links = links
        #: token -> (sharer, product)
        self.tokens: dict[str, tuple[str, str]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, str(request.url), body, dict(request.headers)))
        if len(self.calls) <= self.fail_first:
            if self.failure == "connect":
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(int(self.failure), json={"error": "boom"})
        if request.url.path == "/v1/orders":
            self.orders += 1
            return httpx.Response(201, json={"order_id": f"svc-{self.orders}"})
        if request.url.path.endswith("/questions"):
            self.orders += 1
            return httpx.Response(201, json={"question_id": f"svc-q{self.orders}"})
        if request.url.path == "/v1/shares" and self.links:
            token = "lk-" + f"{len(self.tokens):026d}".translate(
                str.maketrans("0123456789", "abcdefghij")
            )
            self.tokens[token] = (body["user_id"], body["product_id"])
            return httpx.Response(201, json={"link_token": token})
        return httpx.Response(201 if request.method == "POST" else 200, json={})


async def simulate(recorder: Recorder, seed: int = 1, warmup: int = 200) -> Simulator:
    sim = Simulator(
        TARGETS,
        demo_config(seed, users=30),
        transport=httpx.MockTransport(recorder),
        promotions_at=datetime(2026, 12, 1, 12, tzinfo=UTC),
    )
    try:
        await sim.setup()
        await sim.befriend()
        await sim.warmup(warmup)
    finally:
        await sim.close()
    return sim


def shape(calls) -> Counter:
    return Counter((m, u, json.dumps(b, sort_keys=True)) for m, u, b, _ in calls)


async def test_the_same_seed_makes_the_same_calls_and_another_seed_others() -> None:
    first, again, other = Recorder(), Recorder(), Recorder()
    await simulate(first, seed=7)
    await simulate(again, seed=7)
    await simulate(other, seed=8)
    assert shape(first.calls) == shape(again.calls)
    assert shape(first.calls) != shape(other.calls)


async def test_generated_events_become_the_api_calls_that_cause_them() -> None:
    recorder = Recorder()
    sim = await simulate(recorder, warmup=800)  # enough for answers (3 % of the demo's events)
    calls = recorder.calls
    # every write carries the service token
    assert all(h["authorization"] == f"Bearer {TARGETS.token}" for *_, h in calls)
    # the catalog first, then first names, consent and friendships of the 30 users
    products = [b["id"] for m, u, b, _ in calls if u == "http://catalog/v1/products"]
    assert products == [p["id"] for p in DEMO_PRODUCTS]
    routes = Counter(sim.answered)
    assert routes[("PUT", "/v1/users/{id}/profile", 200)] == 30
    assert routes[("PUT", "/v1/users/{id}/privacy", 200)] >= 30
    assert routes[("PUT", "/v1/users/{id}/friends/{id}", 200)] > 30
    # purchases: idempotency keys, catalog prices, Zipf (p0 is bought most)
    orders = [(b, h) for m, u, b, h in calls if u == "http://orders/v1/orders"]
    assert len(orders) > 50
    assert len({h["idempotency-key"] for _, h in orders}) == len(orders)
    prices = {p["id"]: p["price"] for p in DEMO_PRODUCTS}
    lines = [line for b, _ in orders for line in b["lines"]]
    assert all(line["unit_price"] == prices[line["product_id"]] for line in lines)
    popularity = Counter(line["product_id"] for line in lines)
    assert popularity.most_common(1)[0][0] == "p0"
    # refunds name orders by the id the orders service gave them
    refunds = [u for m, u, b, h in calls if u.endswith("/refunds")]
    assert refunds and all(u.split("/")[-2].startswith("svc-") for u in refunds)
    # reviews and shares with valid shapes
    reviews = [b for m, u, b, _ in calls if u == "http://social/v1/reviews"]
    shares = [b for m, u, b, _ in calls if u == "http://social/v1/shares"]
    assert reviews and all(1 <= r["rating"] <= 5 and r["text"] for r in reviews)
    assert shares and all(
        s["channel"] in {"link", "facebook", "x", "whatsapp", "email", "other"} for s in shares
    )
    # questions about products, and answers to the ids the social service gave the questions
    asked = [(u, b, h) for m, u, b, h in calls if u.endswith("/questions")]
    answered = [u for m, u, b, h in calls if u.endswith("/answers")]
    assert asked and all(b["user_id"] and b["text"] and h["idempotency-key"] for _, b, h in asked)
    assert answered and all(u.split("/")[-2].startswith("svc-q") for u in answered)
    # some users opt in to notes about questions on what they bought, not everyone
    privacy = [b for m, u, b, _ in calls if u.endswith("/privacy")]
    assert {b["notify_on_questions"] for b in privacy} == {True, False}


async def test_it_carries_on_through_errors_and_backs_off() -> None:
    for failure in ("500", "429", "connect", "422"):
        recorder = Recorder(fail_first=5, failure=failure)
        sim = await simulate(recorder, warmup=20)
        assert sim.failed == 5
        assert recorder.orders > 0  # it went on once the services answered
        assert sim.backoff == 0.0  # and stopped backing off after a success


def test_the_demo_viewers_are_the_best_connected_users() -> None:
    catalog = demo_catalog(seed=42)
    assert [p["id"] for p in catalog["products"]] == [f"p{i}" for i in range(len(DEMO_PRODUCTS))]
    degrees = [v["friends"] for v in catalog["viewers"]]
    assert degrees == sorted(degrees, reverse=True) and degrees[-1] > 12
    assert demo_catalog(seed=42) == catalog


def test_the_notifier_bundles_the_default_seeds_demo_catalog() -> None:
    # The notifier never imports the simulator: it serves this file (or the one make run writes
    # for its seed). Regenerate: socialproof simulate --write-catalog services/notifier/static/demo-catalog.json
    bundled = Path(services.notifier.__file__).parent / "static" / "demo-catalog.json"
    assert json.loads(bundled.read_text()) == demo_catalog(seed=42)


async def test_promotions_are_defined_and_purchases_arrive_through_friends_links() -> None:
    # Given services that answer every share with a link token
    recorder = Recorder(links=True)
    # When the simulator sets up and warms up
    sim = await simulate(recorder, warmup=1500)
    calls = recorder.calls
    # Then the demo promotions are defined at the catalog after the products, active now
    urls = [u for _, u, _, _ in calls]
    promotions = [b for m, u, b, _ in calls if u == "http://catalog/v1/promotions"]
    assert [p["id"] for p in promotions] == [p["id"] for p in DEMO_PROMOTIONS]
    assert urls.index("http://catalog/v1/promotions") > max(
        i for i, u in enumerate(urls) if u == "http://catalog/v1/products"
    )
    assert {(p["starts_at"], p["ends_at"]) for p in promotions} == {
        ("2026-12-01T11:00:00+00:00", "2027-03-01T12:00:00+00:00")
    }
    # And a share of purchases carries a referral: a token a share of that product answered,
    # never the buyer's own, mostly a friend's
    orders = [b for m, u, b, _ in calls if u == "http://orders/v1/orders"]
    referred = [b for b in orders if "referral" in b]
    assert 0.05 * len(orders) < len(referred) < 0.5 * len(orders), (len(referred), len(orders))
    friends = {
        frozenset(pair) for pair in LoadGenerator(demo_config(1, users=30)).friendship_pairs()
    }
    by_friends = 0
    for body in referred:
        sharer, product = recorder.tokens[body["referral"]]
        assert product == body["lines"][0]["product_id"] and sharer != body["user_id"]
        by_friends += frozenset((sharer, body["user_id"])) in friends
    assert by_friends > len(referred) / 2
    assert sim.referred == len(referred) and sim.failed == 0


async def test_an_existing_promotion_is_left_as_it_is() -> None:
    # Given a catalog that already has the demo promotions (an earlier run): 409
    class Existing(Recorder):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/promotions":
                self.calls.append(
                    (request.method, str(request.url), json.loads(request.content), {})
                )
                return httpx.Response(409, json={"error": "promotion_exists"})
            return super().__call__(request)

    recorder = Existing()
    sim = await simulate(recorder, warmup=10)
    # Then nothing is redefined (its period, and the credits in it, stay) and nothing failed
    assert [m for m, u, _, _ in recorder.calls if "/v1/promotions" in u] == ["POST"] * 3
    assert sim.failed == 0 and sim.backoff == 0.0


def test_a_referral_is_never_the_buyers_own_link_and_prefers_friends() -> None:
    referrals = Referrals(seed=5, rate=1.0)
    referrals.befriend([("ana", "ben")])
    referrals.remember("ana", "p1", "lk-ana")
    referrals.remember("cleo", "p1", "lk-cleo")
    # Ben's purchases come through his friend Ana's link, never a stranger's when she shared
    assert {referrals.pick("ben", "p1") for _ in range(50)} == {"lk-ana"}
    # Ana's own link never brings her; a stranger's link now and then, or none
    assert {referrals.pick("ana", "p1") for _ in range(200)} == {"lk-cleo", None}
    # A product nobody shared: no referral
    assert referrals.pick("ben", "p2") is None
