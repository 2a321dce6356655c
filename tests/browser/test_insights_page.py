"""The merchant insights page (issue #18) in a real browser (Debian's Chromium via Playwright)
against a real notifier, Kafka and Redis: the experiment is created with ``POST /v1/experiments``
and its figures are written to the serving store as the stream processor keeps them
(``contracts.views``, "Badge experiments") in a namespace of this module's own that a notifier
of its own serves.

The merchant logs in with the service token (a wrong one is refused with a message), picks the
experiment and reads the variants side by side (the store's numbers), the uplift intervals
drawn, the conversion-rate chart (one line per variant, axes, legend, a text description), the
verdict the results API gives, the funnel per product, downloads the CSV (the API's bytes) and
switches to Spanish; an experiment short of its sample is "collecting", not a winner. Screenshot:
``test-artifacts/insights-experiment.png``."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis as redis_sync
from playwright.sync_api import Page, expect

from contracts.views import Keys
from socialproof.settings import Settings
from tests.browser.conftest import ARTIFACTS
from tests.conftest import SERVICE_TOKEN
from tests.support.storefront import extra_notifier
from tools.devstack import Stack

ADMIN = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
HOUR_MS = 3_600_000
VARIANTS = [
    {"name": "control", "badge": "none"},
    {"name": "friends", "elements": ["friends", "bought"]},
    {"name": "counts", "elements": ["bought", "reviews"], "min_count": 5},
]
#: visitors and converted visitors: 5 % / 7 % / 5.1 %, past the 8,155 per variant 5 % -> +20 % needs
DECIDED = {"control": (9180, 459), "friends": (8910, 624), "counts": (8910, 454)}


@pytest.fixture(scope="module")
def ns(settings: Settings) -> Iterator[str]:
    namespace = f"tinsightpage{uuid.uuid4().hex[:8]}"
    yield namespace
    client = redis_sync.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def base_url(stack: Stack, ns: str) -> Iterator[str]:
    with extra_notifier(stack, SOCIALPROOF_REDIS_NAMESPACE=ns) as url:
        yield url


def create(base_url: str, experiment_id: str, title: str, products: list[str], days: int) -> None:
    starts = datetime.now(UTC) - timedelta(days=days)
    body = {
        "id": experiment_id,
        "title": title,
        "products": products,
        "variants": VARIANTS,
        "split": [34, 33, 33],
        "starts_at": starts.isoformat(),
    }
    answer = httpx.post(f"{base_url}/v1/experiments", json=body, headers=ADMIN, timeout=10)
    assert answer.status_code == 201, answer.text


def write_figures(
    store: redis_sync.Redis,
    keys: Keys,
    exp: str,
    figures: dict[str, tuple[int, int]],
    funnel: dict[tuple[str, str], tuple[int, int, int, int]],
    days: int,
) -> None:
    """Visitors arriving evenly over ``days``, the converted ones drawn at random among them (the
    chart's lines settle as the days add up), and the funnel per product, as the processor keeps
    them."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000) - HOUR_MS
    span = days * 24 * HOUR_MS
    pipe = store.pipeline(transaction=False)
    for variant, (n, converted) in figures.items():
        firsts = {f"v{variant[:2]}{i:06d}": now_ms - span + span * i // n for i in range(n)}
        pipe.zadd(keys.experiment_visitors(exp, variant), firsts)
        buyers = random.Random(f"{exp}{variant}").sample(sorted(firsts), converted)
        pipe.zadd(keys.experiment_converted(exp, variant), {b: firsts[b] for b in buyers})
    pipe.hset(
        keys.experiment_funnel(exp),
        mapping={
            f"{v}|{p}|{kind}": value
            for (v, p), values in funnel.items()
            for kind, value in zip(("imp", "clk", "dis", "pur"), values, strict=True)
        },
    )
    pipe.execute()


def log_in(page: Page, base_url: str, query: str = "") -> None:
    page.goto(f"{base_url}/insights{query}")
    page.fill("#token", SERVICE_TOKEN)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible(timeout=10_000)


def test_the_merchant_reads_an_experiment_in_english_and_spanish(
    base_url: str, page: Page, redis_client: redis_sync.Redis, ns: str, uid
) -> None:
    keys, exp, mug, lamp = Keys(ns), uid("exp"), uid("mug"), uid("lamp")
    # Given an experiment of six days with a clear winner, in the store as the processor keeps it
    create(base_url, exp, "Friends or counts?", [mug, lamp], days=6)
    funnel = {
        ("control", mug): (12000, 0, 0, 300), ("control", lamp): (6000, 0, 0, 170),
        ("friends", mug): (11000, 880, 40, 420), ("friends", lamp): (5900, 410, 22, 215),
        ("counts", mug): (11500, 600, 35, 310), ("counts", lamp): (6100, 300, 20, 150),
    }  # fmt: skip
    write_figures(redis_client, keys, exp, DECIDED, funnel, days=6)
    results = httpx.get(f"{base_url}/v1/experiments/{exp}/results", headers=ADMIN).json()
    assert results["verdict"]["kind"] == "winner"  # what the page must say, from the API
    # When the merchant opens the page: a login form, no data and no secret in the page itself
    page.goto(f"{base_url}/insights?lang=en")
    expect(page.locator("label[for=token]")).to_have_text("Service token")
    assert SERVICE_TOKEN not in page.content()
    # And a wrong token is refused with a clear message
    page.fill("#token", "not-the-token")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text(
        "That is not this shop's service token: the server refused it. Check it and try again."
    )
    expect(page.locator("#app")).to_be_hidden()
    # When she logs in with the service token and picks the experiment
    page.fill("#token", SERVICE_TOKEN)
    page.click("#login-form button[type=submit]")
    item = page.locator(f'#experiments button[data-experiment="{exp}"]')
    expect(item).to_contain_text("Friends or counts?", timeout=10_000)
    item.click()
    expect(page.locator("#exp-title")).to_have_text("Friends or counts?")
    expect(item).to_have_attribute("aria-current", "true")
    # Then the variants are side by side with the store's numbers
    table = page.locator("#variants")
    expect(table.locator("tbody tr")).to_have_count(3)
    for name, (visitors, converted) in DECIDED.items():
        row = table.locator(f'tbody tr[data-variant="{name}"]')
        impressions = sum(funnel[(name, p)][0] for p in (mug, lamp))
        purchases = sum(funnel[(name, p)][3] for p in (mug, lamp))
        expect(row.locator("[data-col=visitors]")).to_have_text(f"{visitors:,}")
        expect(row.locator("[data-col=impressions]")).to_have_text(f"{impressions:,}")
        expect(row.locator("[data-col=purchases]")).to_have_text(f"{purchases:,}")
        expect(row.locator("[data-col=conversions]")).to_have_text(f"{converted:,}")
        expect(row.locator("[data-col=conversion_rate]")).to_have_text(
            f"{100 * converted / visitors:.2f}%"
        )
    expect(table.locator('tr[data-variant="control"] th .note')).to_have_text(
        "control group · no badge"
    )
    expect(table.locator('tr[data-variant="friends"] th .note')).to_have_text("friends + bought")
    # And the uplift with its interval, as text and drawn as a bar
    friends = next(v for v in results["variants"] if v["name"] == "friends")
    low, high = friends["uplift"]["ci95"]
    uplift = table.locator('tr[data-variant="friends"] [data-col=uplift]')
    expect(uplift.locator(".uplift-text")).to_have_text(
        f"{100 * friends['uplift']['estimate']:+.1f}% [{100 * low:+.1f}%, {100 * high:+.1f}%]"
    )
    bar = uplift.locator("svg[role=img]")
    expect(bar).to_have_attribute("aria-label", re.compile(r"^Uplift \+\d+\.\d%, 95% interval"))
    assert bar.locator("rect.ci").count() == 1
    # And the verdict is the API's, naming the winner
    expect(page.locator("#verdict")).to_have_text(results["verdict"]["text_en"])
    expect(page.locator("#verdict")).to_contain_text('"friends" converts better than "control"')
    expect(page.locator("#srm")).to_be_hidden()
    # And the conversion rate over time is a chart: a line per variant over seven days, axes,
    # a legend and a description for screen readers
    chart = page.locator("#chart-svg svg")
    expect(chart).to_have_attribute("role", "img")
    expect(chart.locator("polyline")).to_have_count(3)
    assert len(chart.locator('g[data-variant="friends"] circle').all()) == 7
    expect(chart.locator("desc")).to_contain_text("Cumulative conversion rate per day")
    assert chart.locator("g.axes text").count() >= 6
    expect(page.locator("#legend li")).to_have_text(["control", "friends", "counts"])
    # And the funnel per product: impressions -> clicks -> purchases per variant
    row = page.locator(f'#products tr[data-product="{mug}"][data-variant="friends"]')
    expect(row.locator("[data-col=impressions]")).to_have_text("11,000")
    expect(row.locator("[data-col=clicks]")).to_have_text("880")
    expect(row.locator("[data-col=purchases]")).to_have_text("420")
    expect(page.locator("#products tbody tr")).to_have_count(6)
    page.screenshot(path=str(ARTIFACTS / "insights-experiment.png"), full_page=True)
    # When she downloads the CSV, Then it is the API's CSV, under the experiment's name
    link = page.locator("a#csv")
    expect(link).to_have_attribute("href", f"v1/experiments/{exp}/results.csv")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"experiment-{exp}-results.csv"
    saved = download.value.path()
    api_csv = httpx.get(f"{base_url}/v1/experiments/{exp}/results.csv", headers=ADMIN).text
    assert open(saved, encoding="utf-8", newline="").read() == api_csv
    # When she switches to Spanish, Then the page, its numbers and the verdict are in Spanish
    page.select_option("#lang", "es")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(table.locator("thead th").nth(2)).to_have_text("Visitantes")
    expect(page.locator("#verdict")).to_have_text(results["verdict"]["text_es"])
    expect(table.locator('tr[data-variant="friends"] [data-col=visitors]')).to_have_text("8910")
    expect(table.locator('tr[data-variant="friends"] [data-col=conversion_rate]')).to_have_text(
        "7,00 %"
    )
    expect(page.locator("#csv")).to_have_text("Descargar los números (CSV)")
    assert "lang=es" in page.url


def test_no_winner_before_the_sample_suffices_and_spanish_from_the_address(
    base_url: str, page: Page, redis_client: redis_sync.Redis, ns: str, uid
) -> None:
    keys, exp, item = Keys(ns), uid("exp"), uid("cup")
    # Given an experiment where friends looks far better, on a few hundred visitors
    create(base_url, exp, "Early days", [item], days=1)
    figures = {"control": (340, 17), "friends": (330, 40), "counts": (330, 16)}
    funnel = {(v, item): (n * 2, n // 10, 3, c) for v, (n, c) in figures.items()}
    write_figures(redis_client, keys, exp, figures, funnel, days=1)
    # When the merchant opens it in Spanish (?lang=es) and logs in
    log_in(page, base_url, f"?lang=es#e={exp}")
    # Then the page says to keep collecting and how many more visitors, and names no winner
    verdict = page.locator("#verdict")
    expect(verdict).to_have_attribute("data-kind", "collecting", timeout=10_000)
    expect(verdict).to_have_text(
        "Siga recogiendo datos: faltan unos 7825 visitantes más por variante antes de un "
        "veredicto (se necesitan 8155 por variante)."
    )
    expect(page.locator("#sample")).to_contain_text("8155 visitantes (aún no alcanzada)")
    expect(page.locator("label[for=token]")).to_have_text("Token de servicio")
    # And in English the same
    page.select_option("#lang", "en")
    expect(verdict).to_have_text(
        "Keep collecting: about 7,825 more visitors per variant before a verdict "
        "(8,155 per variant are needed)."
    )
    # When she signs out, Then the token is gone from the tab
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_the_page_is_served_without_secrets_and_with_a_strict_policy(base_url: str) -> None:
    page = httpx.get(f"{base_url}/insights", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert SERVICE_TOKEN not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    for asset, media in (("insights.js", "text/javascript"), ("insights.css", "text/css")):
        answer = httpx.get(f"{base_url}/insights/{asset}", timeout=5)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(media)
        assert SERVICE_TOKEN not in answer.text
    again = httpx.get(f"{base_url}/insights", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304
