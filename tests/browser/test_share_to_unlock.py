"""The share-to-unlock card (issue #17) in a real browser (Debian's Chromium via Playwright) on the
demo storefront, against the real stack: the offer on the product card and page, the share
button making a share at the social service and showing a ?ref= link, the sharer's progress
following the serving store live (a friend named, then the coupon), the badge's "bought through
friends' shares", and a page opened through a link passing its token on as the order's
referral.

The promotion, credits and rewards are written to the serving store as the stream processor
writes them (contracts.views, "Referrals and promotions") and announced: the card is tested
without the processor's attribution."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import redis as redis_sync
from playwright.sync_api import Page, expect

from contracts.views import Keys
from socialproof.settings import Settings
from tests.browser.conftest import ARTIFACTS
from tests.support.storefront import order, product, publish

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
COUPON = "SP-00C0FFEE12345678"


def offer_promotion(redis_client: redis_sync.Redis, keys: Keys, promotion: str, item: str) -> None:
    """'Share with friends: 10% off when 3 of them buy', active for a day, as the processor
    keeps a catalog's promotion.defined."""
    now = int(time.time() * 1000)
    redis_client.hset(
        keys.promotion(promotion),
        mapping={
            "p": item, "title": "Spread the word!", "goal": 3, "from": now - HOUR_MS,
            "to": now + DAY_MS, "sk": "percent", "sv": "10", "ts": now, "eid": str(uuid.uuid4()),
        },
    )  # fmt: skip
    redis_client.sadd(keys.product_promotions(item), promotion)


def test_the_share_to_unlock_card_shares_and_follows_the_sharers_progress(
    demo_url: str, page: Page, redis_client: redis_sync.Redis, uid
) -> None:
    # Given a product with a share-to-unlock promotion, and Ana looking at the demo shop
    keys, item, promo, ana, ben = Keys("sp"), uid("mug"), uid("promo"), uid("ana"), uid("ben")
    offer_promotion(redis_client, keys, promo, item)
    page.goto(f"{demo_url}/demo?products={item}&viewers={ana}&viewer={ana}")
    expect(page.locator("body")).to_have_attribute("data-viewer", ana, timeout=10_000)
    # Then the product's card shows the offer (the reward and the goal)
    card = page.locator(f'.card[data-product="{item}"]')
    expect(card.locator(".sp-share .sp-offer-text")).to_have_text(
        "Share with friends: 10% off when 3 of them buy", timeout=10_000
    )
    expect(card.locator(".sp-share-button")).to_be_hidden()  # the card's offer is compact
    # When she opens the product's page and shares
    card.locator("button.more").click()
    share = page.locator("#product-share .sp-share")
    expect(share.locator(".sp-offer")).to_contain_text("Spread the word!")
    share.locator(".sp-share-button").click()
    # Then the social service made her a link to this shop with its token
    link = share.locator(".sp-link-input")
    expect(link).to_have_value(
        re.compile(rf"^{re.escape(demo_url)}/demo\?ref=lk-[a-z2-7]{{26}}&open={item}$"),
        timeout=10_000,
    )
    expect(share.locator(".sp-progress")).to_have_text(
        "No friend bought through your link yet", timeout=5_000
    )
    # When Ben, her friend who shares purchases, is credited to her link and she is announced
    now = int(time.time() * 1000)
    redis_client.hset(keys.name(ben), mapping={"n": "Ben"})
    redis_client.hset(keys.consent(ben), mapping={"s": 1})
    redis_client.sadd(keys.friends(ana), ben)
    redis_client.zadd(keys.credits(ana), {f"{item}|{ben}": now})
    redis_client.hset(keys.promotion_progress(promo), ana, 1)
    redis_client.publish(keys.user_changes_channel, json.dumps([ana]))
    # Then her progress shows without a reload, naming him
    expect(share.locator(".sp-progress")).to_have_text(
        "Your link brought 1 buyer (Ben), 2 more to unlock 10% off", timeout=5_000
    )
    # When two more buyers reach the goal and the reward is earned
    reward = f"rw-{uuid.uuid4().hex[:24]}"
    redis_client.hset(
        keys.reward(reward),
        mapping={"P": promo, "role": "sharer", "u": ana, "coupon": COUPON, "status": "earned"},
    )
    redis_client.sadd(keys.user_rewards(ana), reward)
    redis_client.hset(keys.promotion_progress(promo), ana, 3)
    redis_client.publish(keys.user_changes_channel, json.dumps([ana]))
    # Then the card shows her coupon
    expect(share.locator(".sp-progress")).to_have_text(
        f"Unlocked: coupon {COUPON} (10% off)", timeout=5_000
    )
    # And the badge says how many bought through friends' shares
    redis_client.zadd(keys.bought_via_shares(item), {ben: now, uid("b"): now, uid("c"): now})
    redis_client.publish(keys.changes_channel, json.dumps([item]))
    expect(card.locator(".sp-badge .sp-via")).to_have_text(
        "3 bought through friends' shares (24 h)", timeout=5_000
    )
    page.screenshot(path=str(ARTIFACTS / "storefront-share-to-unlock.png"), full_page=True)
    # And in Spanish too
    page.select_option("#lang", "es")
    expect(card.locator(".sp-offer-text")).to_have_text(
        "Compártelo con amigos: 10 % de descuento cuando 3 de ellos compren"
    )
    expect(share.locator(".sp-progress")).to_have_text(
        f"Desbloqueado: cupón {COUPON} (10 % de descuento)"
    )
    expect(card.locator(".sp-via")).to_have_text("3 compraron por enlaces de amigos (24 h)")


def test_a_page_opened_through_a_link_passes_its_token_on_as_the_referral(
    demo_url: str,
    page: Page,
    settings: Settings,
    orders_api: httpx.Client,
    redis_client: redis_sync.Redis,
    uid,
) -> None:
    # Given a product the orders service knows, and Ana's link to the demo shop
    item, ana, ben = uid("lamp"), uid("ana"), uid("ben")
    publish(settings, product(item))
    order(orders_api, uid("u"), item)  # waits until the orders service has seen the product
    shared = httpx.post(
        f"{demo_url}/demo/products/{item}/shares", json={"user_id": ana}, timeout=10
    )
    assert shared.status_code == 201, shared.text
    token = shared.json()["link_token"]
    # When Ben opens the shop through it and buys
    page.goto(f"{demo_url}/demo?products={item}&viewers={ben}&viewer={ben}&ref={token}")
    expect(page.locator("#referral")).to_be_visible(timeout=10_000)
    expect(page.locator("body")).to_have_attribute("data-viewer", ben, timeout=10_000)
    card = page.locator(f'.card[data-product="{item}"]')
    with page.expect_request(f"{demo_url}/demo/orders") as sent:
        card.locator("button.buy").click()
    # Then the order carries Ana's token as its referral, and the orders service took it
    assert json.loads(sent.value.post_data or "{}")["referral"] == token
    status = card.locator(".buy-status")
    expect(status).to_have_text("ordered (through a friend's link)", timeout=10_000)
    placed = orders_api.get(f"/v1/orders/{status.get_attribute('data-order')}")
    assert placed.status_code == 200 and placed.json()["referral"] == token
