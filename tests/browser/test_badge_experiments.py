"""Badge experiments and interaction beacons (issue #18) in a real browser (Debian's Chromium via
Playwright) on the demo storefront, against the real stack: an experiment made with
``POST /v1/experiments``, the widget drawing each visitor's variant as
``GET /v1/experiments/{id}/assignment`` says (the control: no visible badge, an invisible
placeholder; the other variant: its elements in its order, its threshold), the visitor id
(22 characters of base64url in localStorage ``sp_vid``, a new one after 30 days), impressions,
clicks and dismissals reaching ``storefront.interactions`` with the experiment, variant and (the
viewer token going along as ``?viewer_token=``) the viewer, sent by the 5 s timer, on
visibilitychange and on pagehide; the demo's buy button putting the visitor id on the order. With
Global Privacy Control or Do Not Track: the default badge, no visitor id, no request, nothing
published. The shop's switch reaches the widget's defaults.

The product's proof is written to the serving store as the stream processor writes it
(contracts.views) and announced, as in test_storefront.py."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync
from confluent_kafka import Consumer, TopicPartition
from playwright.sync_api import Page, Request, expect

from contracts import codec
from contracts.events import Event
from contracts.topics import INTERACTIONS
from contracts.views import Keys
from services.notifier.api.storefront import assets
from services.notifier.settings import NotifierSettings
from socialproof.kafka import topic_name
from socialproof.settings import Settings
from tests.browser.conftest import ARTIFACTS
from tests.support.storefront import order, product, publish
from tests.support.waiting import wait_for

DAY_MS = 86_400_000
RICH_TEXT = "★4.3 from 3 verified reviews (+2 unverified) · 4 questions answered by buyers"
ANSWERS_FIRST = "4 questions answered by buyers · ★4.3 from 3 verified reviews (+2 unverified)"
VISITOR = re.compile(r"^[A-Za-z0-9_-]{22}$")
# Chromium has no navigator.globalPrivacyControl of its own; Do Not Track is a setting
PRIVACY = {
    "gpc": "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true});",
    "dnt": "Object.defineProperty(navigator, 'doNotTrack', {get: () => '1'});",
}


class Interactions:
    """``storefront.interactions`` from its end when made: the events published since."""

    def __init__(self, settings: Settings) -> None:
        self.topic = topic_name(settings, INTERACTIONS)
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"tests-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                # short fetches: an offset query waits behind the fetch in flight (500 ms by default)
                "fetch.wait.max.ms": 20,
            }
        )
        partitions = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        self.ends = {p: self.end(p) for p in partitions.partitions}
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in self.ends.items()])
        self.events: list[Event] = []

    def end(self, partition: int) -> int:
        return self.consumer.get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=10
        )[1]

    def poll(self) -> list[Event]:
        for message in self.consumer.consume(100, timeout=0.2):
            if message.error() is None:
                self.events.append(codec.decode(message.value()))
                self.ends[message.partition()] = message.offset() + 1
        return self.events

    def of(self, visitor: str, kinds: set[str], timeout: float = 10) -> list[Event]:
        """The visitor's events, once there is one of each of ``kinds``."""

        def probe() -> list[Event]:
            mine = [e for e in self.poll() if e.payload.visitor_id == visitor]
            return mine if kinds <= {e.event_type for e in mine} else []

        return wait_for(probe, timeout, f"{sorted(kinds)} of {visitor} on {self.topic}")

    def to_the_end(self) -> list[Event]:
        """Everything published until now (read up to each partition's current end)."""
        targets = {p: self.end(p) for p in self.ends}

        def reached() -> bool:
            self.poll()
            return all(self.ends[p] >= end for p, end in targets.items())

        wait_for(reached, 10, f"the end of {self.topic}")
        return self.events

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def interactions(settings: Settings) -> Iterator[Interactions]:
    reader = Interactions(settings)
    yield reader
    reader.close()


def proof_of(redis_client: redis_sync.Redis, rich: str, thin: str) -> None:
    """``rich``: 5 reviews (3 verified, 5+5+3) and 4 questions answered by buyers; ``thin``: 2
    answered questions only."""
    keys = Keys("sp")
    redis_client.hset(keys.reviews(rich), mapping={"count": 5, "sum": 22, "vcount": 3, "vsum": 13})
    redis_client.hset(f"sp:qa:{rich}", mapping={"questions": 4, "answered_by_buyers": 4})
    redis_client.hset(f"sp:qa:{thin}", mapping={"questions": 2, "answered_by_buyers": 2})
    redis_client.publish(keys.changes_channel, json.dumps([rich, thin]))


def start_experiment(demo_url: str, service_token: str, experiment: str, *products: str) -> None:
    """control (no badge) / answers (answered questions, then reviews; threshold 3), 50/50."""
    body = {
        "id": experiment,
        "products": list(products),
        "variants": [
            {"name": "control", "badge": "none"},
            {"name": "answers", "elements": ["answered", "reviews"], "min_count": 3},
        ],
        "split": [50, 50],
        "attribution_window_h": 24,
    }
    created = httpx.post(
        f"{demo_url}/v1/experiments",
        json=body,
        headers={"Authorization": f"Bearer {service_token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text


def assigned(demo_url: str, experiment: str, visitor: str) -> str:
    answer = httpx.get(
        f"{demo_url}/v1/experiments/{experiment}/assignment",
        params={"visitor_id": visitor},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["variant"]


def badge(page: Page, product_id: str):
    return page.locator(f'.card[data-product="{product_id}"] .sp-badge')


def hide_page(page: Page) -> None:
    """What the browser does when the tab goes to the background."""
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {get: () => 'hidden', "
        "configurable: true}); document.dispatchEvent(new Event('visibilitychange'))"
    )


def beacon(request: Request) -> bool:
    return "/v1/beacons" in request.url


def wait_sent(page: Page, sent: list[Request], count: int, timeout: float, what: str) -> None:
    """Until ``sent`` (filled by a request listener) has ``count`` requests. Playwright's sync API
    delivers events only while it is called: wait in the page, not in time.sleep."""

    def probe() -> bool:
        page.wait_for_timeout(50)
        return len(sent) >= count

    wait_for(probe, timeout, what)


def expect_variant(page: Page, variant: str, experiment: str, rich: str, thin: str) -> None:
    for item in (rich, thin):
        expect(badge(page, item)).to_have_attribute("data-socialproof-variant", variant)
        expect(badge(page, item)).to_have_attribute("data-socialproof-experiment", experiment)
    # thin's 2 answered questions are under the variant's threshold of 3: an empty place, as
    # every badge of the control, where the default badge would show something
    expect(badge(page, thin)).to_have_class(re.compile(r"\bsp-slot\b"), timeout=10_000)
    expect(badge(page, thin)).to_be_hidden()
    if variant == "control":
        expect(badge(page, rich)).to_have_class(re.compile(r"\bsp-slot\b"))
        expect(badge(page, rich)).to_be_hidden()
        expect(badge(page, rich)).to_have_text("")
    else:
        expect(badge(page, rich)).to_have_text(ANSWERS_FIRST)
        expect(badge(page, rich)).to_be_visible()


def test_the_widget_draws_each_visitors_variant_and_reports_interactions(
    demo_url: str,
    page: Page,
    settings: Settings,
    service_token: str,
    redis_client: redis_sync.Redis,
    orders_api: httpx.Client,
    interactions: Interactions,
    uid,
) -> None:
    # Given two products in an experiment: control (no badge) against answers-first, 50/50
    rich, thin, experiment, ana = uid("teapot"), uid("kettle"), uid("exp"), uid("ana")
    proof_of(redis_client, rich, thin)
    publish(settings, product(rich))
    order(orders_api, uid("u"), rich)  # (the orders service knows it: the demo buys it below)
    start_experiment(demo_url, service_token, experiment, rich, thin)
    url = f"{demo_url}/demo?products={rich},{thin}&viewers={ana}&viewer={ana}"
    page.add_init_script(  # a first visit (the browser context is the module's)
        "if (location.protocol === 'http:' && !sessionStorage.getItem('visited')) { "
        "localStorage.removeItem('sp_vid'); sessionStorage.setItem('visited', '1'); }"
    )
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if beacon(r) else None)

    # When Ana opens the shop for the first time
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-viewer", ana, timeout=10_000)
    first = page.evaluate("SocialProof.visitorId()")
    # Then she has a new random visitor id, kept with its creation time
    assert VISITOR.match(first), first
    stored = json.loads(page.evaluate("localStorage.getItem('sp_vid')"))
    assert stored["id"] == first and abs(stored["t"] - time.time() * 1000) < 60_000
    # And the badges show the variant the notifier assigns to that id
    first_variant = assigned(demo_url, experiment, first)
    expect_variant(page, first_variant, experiment, rich, thin)
    # And the timer sends her impressions of both products within ~5 s
    wait_sent(page, sent, 1, 8, "the first beacon")
    # (a beacon's body is not visible to Playwright: the topic shows what it carried)
    assert (sent[0].method, sent[0].headers["content-type"]) == ("POST", "text/plain")
    viewed = interactions.of(first, {"badge.viewed"})
    assert sorted(e.payload.product_id for e in viewed) == sorted([rich, thin])
    if first_variant == "answers":
        click_and_close(page, rich, sent)

    # When her id is older than 30 days, Then the next page view makes a new one
    old = "Old0visitor0id00000000"
    page.evaluate(
        f"localStorage.setItem('sp_vid', JSON.stringify({{id: '{old}', "
        f"t: Date.now() - 31 * {DAY_MS}}}))"
    )
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-viewer", ana, timeout=10_000)
    beacons = len(sent)
    rotated = page.evaluate("SocialProof.visitorId()")
    assert VISITOR.match(rotated) and rotated not in (old, first)
    expect_variant(page, assigned(demo_url, experiment, rotated), experiment, rich, thin)
    expect(badge(page, thin)).to_have_attribute("data-socialproof-impression", "1")
    expect(badge(page, rich)).to_have_attribute("data-socialproof-impression", "1")

    # When a visitor of the other variant opens the shop (an id the notifier puts there)
    other_variant = "answers" if first_variant == "control" else "control"
    second = next(
        v
        for v in (secrets.token_urlsafe(16) for _ in range(64))
        if assigned(demo_url, experiment, v) == other_variant
    )
    page.evaluate(
        f"localStorage.setItem('sp_vid', JSON.stringify({{id: '{second}', t: Date.now()}}))"
    )
    # (its impressions are still queued: no beacon since the page loaded, the timer's is 5 s)
    assert len(sent) == beacons
    page.reload()  # (Playwright does not see a request of the document going, the topic does)
    expect(page.locator("body")).to_have_attribute("data-viewer", ana, timeout=10_000)
    assert page.evaluate("SocialProof.visitorId()") == second
    # Then the previous page view's impressions went on pagehide
    viewed = interactions.of(rotated, {"badge.viewed"})
    assert sorted(e.payload.product_id for e in viewed) == sorted([rich, thin])
    # And the badges show the new visitor's variant
    expect_variant(page, other_variant, experiment, rich, thin)
    if other_variant == "answers":
        click_and_close(page, rich, sent)
    # When the visitor buys on the demo page, Then the order carries the visitor id
    with page.expect_request(f"{demo_url}/demo/orders") as buying:
        page.locator(f'.card[data-product="{rich}"] button.buy').click()
    assert json.loads(buying.value.post_data or "{}")["visitor_id"] == second
    status = page.locator(f'.card[data-product="{rich}"] .buy-status')
    expect(status).to_have_attribute("data-order", re.compile(r"^o-"), timeout=10_000)
    placed = orders_api.get(f"/v1/orders/{status.get_attribute('data-order')}")
    assert placed.json()["visitor_id"] == second
    page.goto("about:blank")  # (what is still queued goes on pagehide)

    # Then storefront.interactions has each visitor's interactions with experiment and variant
    visitors = {first_variant: first, other_variant: second}
    treated = interactions.of(
        visitors["answers"], {"badge.viewed", "badge.clicked", "badge.dismissed"}
    )
    control = interactions.of(visitors["control"], {"badge.viewed"})
    for variant, events in (("answers", treated), ("control", control)):
        assert all(
            (e.payload.experiment_id, e.payload.variant, e.payload.attribution_window_s)
            == (experiment, variant, 24 * 3600)
            for e in events
        ), events
        viewed = sorted(e.payload.product_id for e in events if e.event_type == "badge.viewed")
        assert viewed == sorted([rich, thin]), (variant, viewed)  # once per product and view
    assert {e.event_type for e in control} == {"badge.viewed"}  # nothing to click or close
    acted = [e for e in treated if e.event_type != "badge.viewed"]
    assert len(acted) == 2, acted
    # (after the viewer token came: with the viewer, from ?viewer_token=)
    assert all((e.payload.product_id, e.payload.viewer_id) == (rich, ana) for e in acted), acted


def click_and_close(page: Page, item: str, sent: list[Request]) -> None:
    """Click the answers visitor's badge, close it, and hide the page: one beacon goes."""
    card_badge = badge(page, item)
    page.screenshot(path=str(ARTIFACTS / "storefront-badge-experiment.png"), full_page=True)
    card_badge.locator(".sp-part").first.click()
    card_badge.get_by_role("button", name="Hide this").click()
    expect(card_badge).to_be_hidden()
    before = len(sent)
    hide_page(page)
    wait_sent(page, sent, before + 1, 5, "the beacon on visibilitychange")


@pytest.mark.parametrize("signal", sorted(PRIVACY))
def test_no_tracking_under_global_privacy_control_or_do_not_track(
    signal: str,
    demo_url: str,
    page: Page,
    service_token: str,
    redis_client: redis_sync.Redis,
    interactions: Interactions,
    uid,
) -> None:
    # Given products in an experiment, and a browser saying "do not track me"
    rich, thin, experiment = uid("teapot"), uid("kettle"), uid("exp")
    proof_of(redis_client, rich, thin)
    start_experiment(demo_url, service_token, experiment, rich, thin)
    page.add_init_script(
        PRIVACY[signal] + "if (location.protocol === 'http:') localStorage.removeItem('sp_vid');"
    )
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/" in r.url else None)
    # When it opens the shop, looks, clicks and closes a badge, hides and leaves the page
    page.goto(f"{demo_url}/demo?products={rich},{thin}&viewers=")
    # Then it sees the default badges, in no variant
    expect(badge(page, rich)).to_have_text(RICH_TEXT, timeout=10_000)
    expect(badge(page, thin)).to_have_text("2 questions answered by buyers")
    expect(badge(page, rich)).not_to_have_attribute("data-socialproof-variant", re.compile(".*"))
    badge(page, rich).locator(".sp-part").first.click()
    badge(page, rich).get_by_role("button", name="Hide this").click()
    expect(badge(page, rich)).to_be_hidden()  # closing still works
    expect(badge(page, thin)).not_to_have_attribute("data-socialproof-impression", "1")
    assert page.evaluate("SocialProof.visitorId()") is None
    assert page.evaluate("localStorage.getItem('sp_vid')") is None
    hide_page(page)
    page.goto("about:blank")
    # And nothing asked for a variant or sent a beacon, and nothing was published
    assert not [u for u in asked if "/experiment" in u or "/v1/beacons" in u], asked
    published = interactions.to_the_end()
    assert not [e for e in published if e.payload.product_id in (rich, thin)], published


def test_the_shops_switch_reaches_the_widget() -> None:
    for on in (True, False):
        widget = assets(NotifierSettings(interaction_tracking=on)).widget[0].decode()
        assert f'"tracking":{json.dumps(on)}' in widget
        assert "function socialproofExperiments(w)" in widget  # the experiments part is inside
