"""Experiment results at the notifier (issue #18) against a real notifier process, Kafka and Redis:
``GET /v1/experiments/{id}/results`` and ``results.csv``.

The experiments are created through the API (``POST /v1/experiments``: the definitions are a
view of the real topic); their figures are written to the serving store as the stream processor
keeps them (``contracts.views``, "Badge experiments") in a namespace of this module's own that a
notifier of its own serves, so the read side is tested without the processor. Every number of
the answer is recomputed here from what was written (the interval with scipy's own relative
risk, the SRM with scipy's chi-square), the CSV must carry the same numbers, the plain badge
funnel ``_`` has one variant; without the service token 401, with another 403, an unknown
experiment 404 naming it, and the serving store down 503 (an app of the router's own)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from scipy import stats
from scipy.stats.contingency import relative_risk

from contracts.events import ExperimentFields
from contracts.layout import StoreLayout
from contracts.views import Keys
from services.notifier.api import insights
from services.notifier.experiments import ExperimentState
from services.notifier.settings import NotifierSettings
from socialproof.http import create_service_app, lifespan_noop
from socialproof.processes import free_port
from socialproof.settings import Settings
from tests.conftest import SERVICE_TOKEN
from tests.support.storefront import extra_notifier
from tools.devstack import Stack

ADMIN = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
DAY_MS = 86_400_000
VARIANTS = [
    {"name": "control", "badge": "none"},
    {"name": "friends", "elements": ["friends", "bought"]},
    {"name": "counts", "elements": ["bought", "reviews"]},
]


@pytest.fixture(scope="module")
def ns(settings: Settings) -> Iterator[str]:
    namespace = f"tinsight{uuid.uuid4().hex[:8]}"
    yield namespace
    client = redis_sync.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def api(stack: Stack, ns: str) -> Iterator[httpx.Client]:
    with extra_notifier(stack, SOCIALPROOF_REDIS_NAMESPACE=ns) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


def create(api: httpx.Client, experiment_id: str, products: list[str], **extra: object) -> dict:
    body = {"id": experiment_id, "products": products, "variants": VARIANTS, **extra}
    answer = api.post("/v1/experiments", json={"split": [34, 33, 33], **body}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def write_variant(
    store: redis_sync.Redis, keys: Keys, exp: str, variant: str, first_ms: list[int], converted: int
) -> None:
    """Visitors with their first impressions, the first ``converted`` of them converting an hour
    later (``xvf``, ``xcv`` as the processor keeps them)."""
    visitors = {f"v{variant}{i:05d}": ms for i, ms in enumerate(first_ms)}
    store.zadd(keys.experiment_visitors(exp, variant), visitors)
    conversions = {v: ms + 3_600_000 for v, ms in list(visitors.items())[:converted]}
    if conversions:
        store.zadd(keys.experiment_converted(exp, variant), conversions)


def spread(n: int, start_ms: int, end_ms: int) -> list[int]:
    return [start_ms + (end_ms - start_ms) * i // n for i in range(n)]


def rows_of(text: str) -> dict[tuple[str, str, str, str], dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {(r["section"], r["date"], r["product_id"], r["variant"]): r for r in rows}


def test_the_results_are_the_stores_figures_with_their_statistics(
    api: httpx.Client, redis_client: redis_sync.Redis, ns: str, uid
) -> None:
    keys, exp, p1, p2 = Keys(ns), uid("exp"), uid("p1"), uid("p2")
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    start = midnight - timedelta(days=2) + timedelta(hours=1)
    start_ms = int(start.timestamp() * 1000)
    # Given an experiment that started two days ago (three UTC days of figures)
    create(api, exp, [p1, p2], starts_at=start.isoformat(), title="Friends or counts?")
    # And its figures as the processor keeps them: visitors over the days, some converted
    figures = {"control": (340, 17), "friends": (330, 30), "counts": (330, 16)}
    end_ms = int(now.timestamp() * 1000) - 2 * 3_600_000
    for variant, (n, converted) in figures.items():
        write_variant(redis_client, keys, exp, variant, spread(n, start_ms, end_ms), converted)
    funnel = {
        ("control", p1): (900, 0, 0, 12), ("control", p2): (100, 0, 0, 6),
        ("friends", p1): (700, 70, 7, 25), ("friends", p2): (310, 31, 3, 9),
        ("counts", p1): (640, 40, 9, 11), ("counts", p2): (20, 2, 0, 0),
    }  # fmt: skip
    redis_client.hset(
        keys.experiment_funnel(exp),
        mapping={
            f"{v}|{p}|{kind}": value
            for (v, p), values in funnel.items()
            for kind, value in zip(("imp", "clk", "dis", "pur"), values, strict=True)
        },
    )
    # When the shop reads the results
    answer = api.get(f"/v1/experiments/{exp}/results", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "private, no-store"
    body = answer.json()
    # Then every variant's figures are the store's
    assert (body["experiment_id"], body["status"], body["control"]) == (exp, "active", "control")
    assert [v["name"] for v in body["variants"]] == ["control", "friends", "counts"]
    for v in body["variants"]:
        n, converted = figures[v["name"]]
        sums = [sum(funnel[(v["name"], p)][k] for p in (p1, p2)) for k in range(4)]
        assert [v[k] for k in ("impressions", "clicks", "dismissals", "purchases")] == sums
        assert (v["visitors"], v["conversions"]) == (n, converted)
        assert v["conversion_rate"] == converted / n
    # And the uplifts are Katz intervals of the rate ratios (scipy's own implementation)
    assert body["variants"][0]["uplift"] is None
    for v in body["variants"][1:]:
        ref = relative_risk(figures[v["name"]][1], figures[v["name"]][0], 17, 340)
        low, high = ref.confidence_interval(0.95)
        assert v["uplift"]["estimate"] == pytest.approx(ref.relative_risk - 1)
        assert v["uplift"]["ci95"] == [pytest.approx(low - 1), pytest.approx(high - 1)]
    # And the split is checked (340/330/330 of 34/33/33 is fine)
    assert body["srm_p_value"] == pytest.approx(
        stats.chisquare([340, 330, 330], [340, 330, 330]).pvalue
    )
    assert body["srm_warning"] is False
    # And no winner is named on 330 visitors when 5 % -> +20 % needs thousands
    required = body["sample"]["required_per_variant"]
    assert required == 8155 and body["sample"]["sufficient"] is False
    assert body["verdict"]["kind"] == "collecting"
    assert body["verdict"]["text_en"].startswith(
        f"Keep collecting: about {required - 330:,} more visitors per variant before a verdict"
    )
    assert "Katz" in body["method"] and "p < 0.001" in body["method"]
    # And the series counts, per UTC day, the visitors and conversions up to the day's end
    days = [(midnight - timedelta(days=d)).date().isoformat() for d in (2, 1, 0)]
    assert [point["date"] for point in body["series"]] == days
    for d, point in enumerate(body["series"]):
        until = int((midnight - timedelta(days=1 - d)).timestamp() * 1000) - 1
        for v in point["variants"]:
            n, converted = figures[v["name"]]
            firsts = spread(n, start_ms, end_ms)
            expected_visitors = len([ms for ms in firsts if d == 2 or ms <= until])
            expected_conv = len(
                [ms for ms in firsts[:converted] if d == 2 or ms + 3_600_000 <= until]
            )
            assert (v["visitors"], v["conversions"]) == (expected_visitors, expected_conv)
    assert body["series"][-1]["variants"][1]["visitors"] == 330  # the last day counts everything
    # And the funnel per product, the most seen first
    assert [p["product_id"] for p in body["products"]] == [p1, p2]
    assert body["products"][1]["variants"][1] == {
        "name": "friends", "impressions": 310, "clicks": 31, "dismissals": 3, "purchases": 9,
    }  # fmt: skip
    # When the CSV is downloaded, Then it has the same numbers
    download = api.get(f"/v1/experiments/{exp}/results.csv", headers=ADMIN)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        download.headers["content-disposition"]
        == f'attachment; filename="experiment-{exp}-results.csv"'
    )
    rows = rows_of(download.text)
    for v in body["variants"]:
        row = rows[("variant", "", "", v["name"])]
        for k in (
            "split",
            "visitors",
            "impressions",
            "clicks",
            "dismissals",
            "purchases",
            "conversions",
        ):
            assert int(row[k]) == v[k], (v["name"], k)
        assert float(row["conversion_rate"]) == v["conversion_rate"]
        if v["uplift"] is None:
            assert row["uplift_estimate"] == row["uplift_ci95_low"] == row["uplift_ci95_high"] == ""
        else:
            cells = [
                float(row[k]) for k in ("uplift_estimate", "uplift_ci95_low", "uplift_ci95_high")
            ]
            assert cells == [v["uplift"]["estimate"], *v["uplift"]["ci95"]]
    for p in body["products"]:
        for v in p["variants"]:
            row = rows[("product", "", p["product_id"], v["name"])]
            assert [int(row[k]) for k in ("impressions", "clicks", "dismissals", "purchases")] == [
                v["impressions"], v["clicks"], v["dismissals"], v["purchases"],
            ]  # fmt: skip
    for point in body["series"]:
        for v in point["variants"]:
            row = rows[("series", point["date"], "", v["name"])]
            assert (int(row["visitors"]), int(row["conversions"])) == (
                v["visitors"],
                v["conversions"],
            )
    assert len(rows) == 3 + 2 * 3 + 3 * 3


def test_a_split_off_is_flagged_and_outranks_a_winner(
    api: httpx.Client, redis_client: redis_sync.Redis, ns: str, uid
) -> None:
    keys, exp = Keys(ns), uid("exp")
    create(api, exp, [uid("p")], variants=VARIANTS[:2], split=[50, 50])
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    # 55/45 of a 50/50 split, the variant converting far better
    write_variant(redis_client, keys, exp, "control", [now_ms - 1000] * 11_000, 500)
    write_variant(redis_client, keys, exp, "friends", [now_ms - 1000] * 9_000, 900)
    body = api.get(f"/v1/experiments/{exp}/results", headers=ADMIN).json()
    assert body["srm_warning"] is True
    assert body["srm_p_value"] == pytest.approx(stats.chisquare([11_000, 9_000]).pvalue)
    assert body["verdict"]["kind"] == "srm"
    assert "planned 50/50, observed 55.0/45.0" in body["verdict"]["text_en"]
    assert body["variants"][1]["uplift"]["ci95"][0] > 0  # it would have won


def test_the_plain_badge_funnel_is_experiment_underscore(
    api: httpx.Client, redis_client: redis_sync.Redis, ns: str, uid
) -> None:
    keys, item = Keys(ns), uid("p")
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    write_variant(redis_client, keys, "_", "badge", [now_ms - DAY_MS, now_ms - 1000], 1)
    redis_client.hset(
        keys.experiment_funnel("_"), mapping={f"badge|{item}|imp": 5, f"badge|{item}|pur": 1}
    )
    body = api.get("/v1/experiments/_/results", headers=ADMIN).json()
    (badge,) = body["variants"]
    assert (badge["name"], badge["visitors"], badge["conversions"]) == ("badge", 2, 1)
    assert (badge["impressions"], badge["purchases"], badge["uplift"]) == (5, 1, None)
    assert body["srm_warning"] is False and body["srm_p_value"] is None
    assert body["verdict"]["kind"] == "no_experiment"
    assert len(body["series"]) == 30 and body["series"][-1]["variants"][0]["visitors"] == 2
    csv_rows = rows_of(api.get("/v1/experiments/_/results.csv", headers=ADMIN).text)
    assert csv_rows[("variant", "", "", "badge")]["visitors"] == "2"


def test_results_need_the_service_token_and_a_known_experiment(api: httpx.Client, uid) -> None:
    exp = uid("exp")
    create(api, exp, [uid("p")])
    for path in (f"/v1/experiments/{exp}/results", f"/v1/experiments/{exp}/results.csv"):
        assert api.get(path).status_code == 401
        assert api.get(path, headers={"Authorization": "Bearer nope"}).status_code == 403
    unknown = uid("nope")
    for suffix in ("results", "results.csv"):
        missing = api.get(f"/v1/experiments/{unknown}/{suffix}", headers=ADMIN)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found" and unknown in missing.json()["message"]
    # an experiment with no figures yet reads zeros
    empty = api.get(f"/v1/experiments/{exp}/results", headers=ADMIN).json()
    assert [v["visitors"] for v in empty["variants"]] == [0, 0, 0]
    assert empty["verdict"]["kind"] == "collecting" and empty["products"] == []


class OneExperiment:
    def __init__(self, state: ExperimentState) -> None:
        self.state = state

    def get(self, experiment_id: str) -> ExperimentState | None:
        return self.state if experiment_id == self.state.experiment_id else None


async def test_the_serving_store_down_is_a_503() -> None:
    settings = NotifierSettings(service_token=SERVICE_TOKEN)
    app = create_service_app(
        service="notifier",
        settings=settings,
        description="insights only",
        lifespan=lifespan_noop,
        readiness=lambda app: {},
    )
    app.include_router(insights.router)
    fields = ExperimentFields(
        experiment_id="exp-1",
        products=["p1"],
        variants=VARIANTS[:2],
        split=[50, 50],
        starts_at=datetime.now(UTC),
    )
    app.state.experiments = OneExperiment(ExperimentState(fields, fields.starts_at))
    app.state.reader = SimpleNamespace(layout=StoreLayout("down"))
    # nothing listens on this port: connection refused, as when Redis is down (no retries:
    # redis-py's default ones take ~4 s before the same error)
    app.state.redis = aioredis.Redis(
        port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier") as client:
        for path in ("/v1/experiments/exp-1/results", "/v1/experiments/exp-1/results.csv"):
            answer = await client.get(path, headers=ADMIN)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "store_unavailable"
            assert answer.headers["retry-after"]
    await app.state.redis.aclose()
