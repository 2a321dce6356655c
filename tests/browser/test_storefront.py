"""The demo storefront and the widget in a real browser (Debian's Chromium via Playwright), against
the real stack: badges change live without a reload, friend counts follow the viewer switcher,
Spanish and rounding, reduced motion, the demo home page with realistic data, verified reviews
and answered questions on the badge, the viewer's own notifications, and asking and answering
on the demo's product page."""

from __future__ import annotations

import json
import time

import httpx
from playwright.sync_api import Page, expect

from contracts.views import Keys
from socialproof.settings import Settings
from tests.browser.conftest import ARTIFACTS
from tests.support.storefront import friends, order, person, product, publish
from tests.support.waiting import wait_for
from tools.devstack import Stack
from tools.loadgen import LoadGenerator
from tools.simulate import demo_catalog, demo_config


def badge(page: Page, product_id: str):
    return page.locator(f'.card[data-product="{product_id}"] .sp-badge')


def test_a_purchase_changes_the_badge_without_a_reload(
    demo_url: str, page: Page, settings: Settings, orders_api: httpx.Client, uid
) -> None:
    # Given a product one person bought, on the demo storefront
    item, other = uid("lamp"), uid("mug")
    publish(settings, product(item), product(other))
    order(orders_api, uid("u"), item)
    page.goto(f"{demo_url}/demo?products={item},{other}&viewers=")
    expect(badge(page, item)).to_have_text("1 bought in the last 24 h", timeout=10_000)
    expect(badge(page, item)).to_have_attribute("aria-live", "polite")
    expect(badge(page, other)).to_be_hidden()  # nothing to show yet: no empty badge
    page.evaluate("window.__sameDocument = true")
    # When somebody orders it through the API
    order(orders_api, uid("u"), item)
    # Then the badge changes by itself, on the same document (no reload)
    expect(badge(page, item)).to_have_text("2 bought in the last 24 h", timeout=5_000)
    assert page.evaluate("window.__sameDocument") is True


def test_switching_viewer_changes_the_friend_counts(
    demo_url: str, page: Page, settings: Settings, orders_api: httpx.Client, uid
) -> None:
    # Given Ana (friends with Ben and Carl) and Dan (friends with Ben only); Ben and Carl bought
    item = uid("guitar")
    ana, dan, ben, carl = uid("ana"), uid("dan"), uid("ben"), uid("carl")
    publish(
        settings,
        product(item),
        *person(ana, "Ana"),
        *person(dan, "Dan"),
        *person(ben, "Ben"),
        *person(carl, "Carl"),
        friends(ana, ben),
        friends(ana, carl),
        friends(dan, ben),
    )
    order(orders_api, ben, item)
    order(orders_api, carl, item)
    # When Ana looks at the shop
    page.goto(f"{demo_url}/demo?products={item}&viewers={ana},{dan}&viewer={ana}")
    # Then she sees her two friends
    expect(badge(page, item)).to_have_text(
        "2 friends bought this · 2 bought in the last 24 h", timeout=10_000
    )
    expect(badge(page, item).locator(".sp-friends")).to_have_attribute("title", "Ben, Carl")
    # When the viewer switcher changes to Dan, Then one friend
    page.select_option("#viewer", dan)
    expect(badge(page, item)).to_have_text(
        "1 friend bought this · 2 bought in the last 24 h", timeout=5_000
    )
    # And as a guest (no viewer token) no friend data at all
    page.select_option("#viewer", "")
    expect(badge(page, item)).to_have_text("2 bought in the last 24 h", timeout=5_000)
    page.select_option("#viewer", ana)
    expect(badge(page, item)).to_contain_text("2 friends bought this", timeout=5_000)
    page.screenshot(path=str(ARTIFACTS / "storefront-viewer-switch.png"), full_page=True)


def test_the_widget_on_a_shop_page_speaks_spanish_and_rounds_large_counts(
    demo_url: str, page: Page, redis_client, uid
) -> None:
    # Given a shop page on another origin embedding the widget with one script tag
    item = uid("sneakers")
    page.set_content(
        f'<html lang="es"><body><h1>Zapatillas</h1><script src="{demo_url}/widget.js" '
        f'data-product="{item}" data-min-count="3"></script></body></html>'
    )
    widget = page.locator(".sp-badge")
    expect(widget).to_be_attached()
    expect(widget).to_be_hidden()  # nobody bought it yet
    # When 2,540 distinct buyers are in the serving store and the change is announced
    keys, now_ms = Keys("sp"), int(time.time() * 1000)
    redis_client.zadd(keys.buyers(item), {f"b{i}": now_ms for i in range(2_540)})
    redis_client.publish(keys.changes_channel, json.dumps([item]))
    # Then the badge appears, in Spanish, rounded down with a "+"
    expect(widget).to_have_text("2,5k+ compras en las últimas 24 h", timeout=5_000)
    expect(widget).to_have_attribute("aria-live", "polite")
    formats = page.evaluate(
        "[999, 1000, 2540, 12345, 3400000].map(n => SocialProof.format(n, 'en'))"
    )
    assert formats == ["999", "1k+", "2.5k+", "12k+", "3.4M+"]


def test_badges_do_not_animate_for_people_who_prefer_reduced_motion(
    demo_url: str, page: Page, redis_client, uid
) -> None:
    keys = Keys("sp")

    def sell(item: str, buyers: int) -> None:
        now_ms = int(time.time() * 1000)
        redis_client.zadd(keys.buyers(item), {f"b{i}": now_ms for i in range(buyers)})
        redis_client.publish(keys.changes_channel, json.dumps([item]))

    classes = {}
    for preference in ("no-preference", "reduce"):
        item = uid(preference)
        sell(item, 3)
        page.emulate_media(reduced_motion=preference)
        page.goto(f"{demo_url}/demo?products={item}&viewers=")
        expect(badge(page, item)).to_have_text("3 bought in the last 24 h", timeout=10_000)
        sell(item, 4)
        expect(badge(page, item)).to_have_text("4 bought in the last 24 h", timeout=5_000)
        classes[preference] = badge(page, item).get_attribute("class").split()
    assert "sp-changed" in classes["no-preference"]  # a short highlight on change…
    assert "sp-changed" not in classes["reduce"]  # …but not when motion should be reduced


def test_the_demo_home_page_is_alive_with_realistic_data(
    stack: Stack, demo_url: str, page: Page, settings: Settings
) -> None:
    # Given the demo world (what `socialproof simulate` creates through the APIs) as events
    catalog = demo_catalog()
    world = LoadGenerator(demo_config())
    publish(settings, *world.setup_events(), *world.activity_events(300))
    top = catalog["products"][0]["id"]
    wait_for(
        lambda: (
            httpx.get(f"{stack.url('notifier')}/v1/proof/products/{top}").json()["bought"]["24h"]
            >= 10
        ),
        20,
        "the demo world to be counted",
        interval=0.2,
    )
    # When a person opens the storefront's home page
    page.goto(f"{demo_url}/")
    # Then every product has a card, the best-connected viewer is selected, badges show friends
    # and counts, the trending strip ranks products and the ticker shows who did what
    expect(page.locator(".card")).to_have_count(len(catalog["products"]))
    expect(page.locator("#viewer")).to_have_value(catalog["viewers"][0]["id"])
    expect(badge(page, top)).to_contain_text("bought in the last 24 h", timeout=10_000)
    expect(page.locator(".sp-friends").first).to_contain_text("bought this", timeout=10_000)
    expect(page.locator("#trending li b").first).to_have_text("#1", timeout=10_000)
    expect(page.locator("#ticker li time").first).to_be_visible(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "storefront-demo.png"), full_page=True)


def test_the_badge_shows_verified_reviews_labels_the_rest_and_answered_questions(
    demo_url: str, page: Page, redis_client, uid
) -> None:
    # Given a product with 5 reviews, 3 by verified buyers (5+5+3), and 2 questions answered by
    # buyers, and one whose 2 reviews are by nobody who bought it, in the serving store (issue
    # #19's hashes) and announced
    keys, item, unbought = Keys("sp"), uid("teapot"), uid("kettle")
    redis_client.hset(keys.reviews(item), mapping={"count": 5, "sum": 22, "vcount": 3, "vsum": 13})
    redis_client.hset(f"sp:qa:{item}", mapping={"questions": 3, "answered_by_buyers": 2})
    redis_client.hset(keys.reviews(unbought), mapping={"count": 2, "sum": 9})
    redis_client.publish(keys.changes_channel, json.dumps([item, unbought]))
    # When the demo storefront shows them
    page.goto(f"{demo_url}/demo?products={item},{unbought}&viewers=")
    # Then the stars are the verified buyers' ones, the others are labelled, and the answers
    expect(badge(page, item)).to_have_text(
        "★4.3 from 3 verified reviews (+2 unverified) · 2 questions answered by buyers",
        timeout=10_000,
    )
    expect(badge(page, unbought)).to_have_text("★4.5 from 2 unverified reviews")


def test_the_demo_shows_the_viewers_own_notifications_live(
    demo_url: str, page: Page, redis_client, uid
) -> None:
    # Given Ana, who allows question notifications, looking at the shop
    item, ana, question = uid("lamp"), uid("ana"), uid("q")
    redis_client.hset(f"sp:consent:{ana}", mapping={"q": 1})
    page.goto(f"{demo_url}/demo?products={item}&viewers={ana}&viewer={ana}")
    expect(page.locator("body")).to_have_attribute("data-notes", ana, timeout=10_000)
    # When a question about something she bought reaches her notes and she is announced
    now_ms = int(time.time() * 1000)
    redis_client.hset(f"sp:question:{question}", mapping={"p": item, "ts": now_ms, "hidden": 0})
    redis_client.zadd(f"sp:notes:{ana}", {question: now_ms})
    redis_client.publish("sp:user-changes", json.dumps([ana]))
    # Then her notifications list shows it without a reload
    expect(page.locator(f'#notes li[data-question="{question}"]')).to_contain_text(
        f"New question about {item}", timeout=5_000
    )


def test_the_demo_product_page_asks_and_answers_as_the_selected_viewer(
    demo_url: str, page: Page, uid
) -> None:
    # Given Ana looking at a product's page on the demo storefront
    item, ana, ben = uid("mug"), uid("ana"), uid("ben")
    page.goto(f"{demo_url}/demo?products={item}&viewers={ana},{ben}&viewer={ana}")
    expect(page.locator("body")).to_have_attribute("data-viewer", ana, timeout=10_000)
    page.locator(f'.card[data-product="{item}"] button.more').click()
    expect(page.locator("#questions")).to_contain_text("No questions yet", timeout=10_000)
    # When she asks a question (the demo posts it to the social service as her)
    page.fill("#ask textarea", "Is it dishwasher safe?")
    page.click("#ask button")
    # Then it is listed on the page
    question = page.locator("#questions > li", has_text="Is it dishwasher safe?")
    expect(question).to_contain_text(ana, timeout=10_000)
    # When Ben answers it, Then his answer is listed under it
    page.select_option("#viewer", ben)
    expect(page.locator("body")).to_have_attribute("data-viewer", ben, timeout=5_000)
    question.locator("input[name=text]").fill("Yes, mine has been through it 100 times.")
    question.locator("button").click()
    expect(question.locator(".answers li")).to_contain_text("100 times", timeout=10_000)
    expect(page.locator("#qa-status")).to_have_text("posted")
    page.screenshot(path=str(ARTIFACTS / "storefront-questions.png"), full_page=True)
