"""Explanations of ``bought_via_shares.24h`` / ``.7d`` against a real Redis written by the real
counter store (no broker): in the generated referral shop (``tests/support/referrals.py``: links
known, unknown and the buyer's own, refunds, cancellations, erasures of a sharer and a buyer), for
both windows and any page size, on every layout of the store (one shard, four, a Redis Cluster's
twelve: :mod:`tests.support.stores`), the counted events are the served number and exactly the
reference model's credited purchases with their shares, and every other referred purchase of a
listed buyer is excluded with the reason the events give; a small shop by hand shows each reason
and every field; the endpoint and ``socialproof explain`` page it like the other figures."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from contracts import events as ev
from services.counters.referral_oracle import ReferralOracle
from services.notifier.explain import Explainer, UserRefs
from services.notifier.proof import VIA_WINDOWS_MS, ProofReader, to_json
from services.notifier.settings import NotifierSettings
from socialproof.settings import Settings
from tests.integration.test_explain import KEY, aredis, every_page  # noqa: F401 (fixture)
from tests.support.referrals import AT, SECRET, Shop, apply_in_chunks, generated_shop
from tests.support.referrals import store as counter_store
from tests.support.stores import StoreUnderTest

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def expected_reasons(
    events: list[ev.Event], oracle: ReferralOracle, product: str, window_start: int
) -> tuple[dict[str, str], dict[str, str]]:
    """From the events: (order -> buyer) of the counted purchases and (order -> reason) of the
    excluded ones, for the buyers the store lists (a kept purchase of the product)."""
    base = oracle.base
    kept = {(order, p) for order, p, _, _ in base.kept}
    listed = base.latest_buy.get(product, {})
    purchases: dict[str, ev.PurchaseCompleted] = {}
    for e in sorted(
        (e for e in events if isinstance(e, ev.PurchaseCompleted)),
        key=lambda e: (e.occurred_at, str(e.event_id)),
    ):
        purchases.setdefault(e.payload.order_id, e)
    counted: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for order, e in purchases.items():
        buyer, token = e.payload.user_id, e.payload.referral
        if not token or buyer not in listed or buyer in base.erased:
            continue
        if product not in {line.product_id for line in e.payload.lines}:
            continue
        credit = oracle.credits.get((product, buyer))
        if credit is not None and credit.order == order:
            if credit.ms >= window_start:
                counted[order] = buyer
            else:
                reasons[order] = "outside_window"
        elif (order, product) not in kept:
            reasons[order] = "refunded"
        elif token not in oracle.links:
            reasons[order] = "unknown_link"
        elif oracle.links[token] == buyer:
            reasons[order] = "self_referral"
        else:
            reasons[order] = "not_first_touch"
    return counted, reasons


async def test_every_page_size_adds_up_to_the_served_figure_and_the_oracles_credits(
    store: StoreUnderTest,  # noqa: F811
) -> None:
    # Given the generated referral shop, through the real counter store, on one shard, four on
    # one Redis (the credits in the referrals shard, the product's buyers in its own: the second
    # phase walks across them) and twelve on a Redis Cluster
    events, facts = generated_shop()
    await apply_in_chunks(counter_store(store.redis, store.namespace), events, 80)
    oracle = ReferralOracle(events, SECRET)
    reader = ProofReader(store.redis, store.namespace, shards=store.layout.shards)
    refs = UserRefs(KEY)
    explainer = Explainer(reader, refs)
    by_order = {e.payload.order_id: e for e in events if isinstance(e, ev.PurchaseCompleted)}
    shares = {e.payload.link_token: e for e in events
              if isinstance(e, ev.ProductShared) and e.payload.link_token}
    erased = {refs(u) for u in facts["erased"]}
    seen_reasons: set[str] = set()
    # (instants where both windows hold credited buyers and leave some out)
    for now in (AT + 5 * DAY, AT + 9 * DAY):
        now_ms = int(now.timestamp() * 1000)
        for product in facts["products"]:
            proof = to_json(await reader.read(product, now_ms=now_ms))
            for label, window in VIA_WINDOWS_MS.items():
                path = f"bought_via_shares.{label}"
                pages = []
                for limit in (1, 3, 1000):
                    # When the figure is explained in pages of `limit`
                    value, counted, excluded = await every_page(
                        explainer, product, path, limit=limit, now_ms=now_ms
                    )
                    pages.append((value, counted, excluded))
                    # Then its events are the served number
                    assert value == len(counted) == proof["bought_via_shares"][label], path
                # and every page size lists the same, in the same order
                assert pages[0] == pages[1] == pages[2], (product, path)
                value, counted, excluded = pages[0]
                # and the counted purchases are the oracle's credits in the window, each with
                # the share it came through; the others carry the reason the events give
                want_counted, want_reasons = expected_reasons(
                    events, oracle, product, now_ms - window
                )
                assert {e["order_id"]: e["user_ref"] for e in counted} == {
                    o: refs(b) for o, b in want_counted.items()
                }
                assert {e["order_id"]: e["reason"] for e in excluded} == want_reasons
                for entry in counted:
                    credit = oracle.credits[(product, want_counted[entry["order_id"]])]
                    share = shares[by_order[entry["order_id"]].payload.referral]
                    assert entry["event_id"] == str(by_order[entry["order_id"]].event_id)
                    assert entry["sharer_ref"] == refs(credit.sharer)
                    assert entry["share_id"] == share.payload.share_id
                    assert entry["share_event_id"] == str(share.event_id)
                # and no erased user is named, as buyer or as sharer
                named = {e.get(k) for e in counted + excluded for k in ("user_ref", "sharer_ref")}
                assert not named & erased
                # and without the excluded ones, the same events in the same order
                again = await every_page(
                    explainer, product, path, limit=2, now_ms=now_ms, with_excluded=False
                )
                assert again == (value, counted, [])
                seen_reasons |= set(want_reasons.values())
    # (the shop exercises every reason)
    assert seen_reasons == {
        "outside_window", "refunded", "unknown_link", "self_referral", "not_first_touch"
    }


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def hand_shop(now: datetime) -> tuple[list[ev.Event], dict[str, str]]:
    """ana, ben and cleo share p (jon too, then he is erased). dan buys through ana's link, then
    ben's; eve through ana's (refunded), then ben's; ana through her own; fay through a link
    never shared; gus through cleo's three days ago; hal through cleo's, then he is erased; ivy
    through jon's; kim through ana's, cancelled (her only purchase)."""
    shop = Shop(17)
    tokens = {u: shop.token() for u in ("ana", "ben", "cleo", "jon", "nobody")}
    T = now - HOUR
    events = [
        shop.share(f"s-{u}", u, "p", T - 4 * DAY, tokens[u]) for u in ("ana", "ben", "cleo", "jon")
    ]
    events += [
        shop.purchase("o1", "dan", ["p"], T - 2 * HOUR, tokens["ana"]),
        shop.purchase("o2", "dan", ["p"], T - HOUR, tokens["ben"]),
        shop.purchase("o3", "eve", ["p"], T - 3 * HOUR, tokens["ana"]),
        shop.refund("o3", "eve", "p", 2, T),
        shop.purchase("o4", "eve", ["p"], T - 90 * MINUTE, tokens["ben"]),
        shop.purchase("o5", "ana", ["p"], T, tokens["ana"]),
        shop.purchase("o6", "fay", ["p"], T, tokens["nobody"]),
        shop.purchase("o7", "gus", ["p"], T - 3 * DAY, tokens["cleo"]),
        shop.purchase("o8", "hal", ["p"], T, tokens["cleo"]),
        shop.purchase("o9", "ivy", ["p"], T, tokens["jon"]),
        shop.purchase("o10", "kim", ["p"], T, tokens["ana"]),
        shop.cancel("o10", "kim", T),
        shop.purchase("o11", "zed", ["p"], T),  # no link: no event of the figure
        shop.erase("hal", now), shop.erase("jon", now),
    ]
    ids = {e.payload.order_id: str(e.event_id) for e in events
           if isinstance(e, ev.PurchaseCompleted)}
    ids |= {e.payload.share_id: str(e.event_id) for e in events if isinstance(e, ev.ProductShared)}
    return events, ids


async def test_each_reason_and_field_in_a_shop_by_hand(
    aredis: aioredis.Redis, namespace: str  # noqa: F811
) -> None:
    events, ids = hand_shop(NOW)
    await apply_in_chunks(counter_store(aredis, namespace), events, 5)
    refs = UserRefs(KEY)
    explainer = Explainer(ProofReader(aredis, namespace), refs)
    now_ms = int(NOW.timestamp() * 1000)
    # When bought_via_shares.24h is explained
    value, counted, excluded = await every_page(
        explainer, "p", "bought_via_shares.24h", limit=2, now_ms=now_ms
    )
    # Then dan (his first touch, ana's link) and eve (ben's, her ana purchase refunded) count,
    # newest credited purchase first, each with the share
    assert value == 2
    assert [(e["order_id"], e["user_ref"], e["sharer_ref"], e["share_id"]) for e in counted] == [
        ("o4", refs("eve"), refs("ben"), "s-ben"), ("o1", refs("dan"), refs("ana"), "s-ana"),
    ]
    assert counted[1] == {
        "event_id": ids["o1"], "occurred_at": "2026-11-20T09:00:00.000Z",
        "user_ref": refs("dan"), "kind": "purchase", "order_id": "o1", "share_id": "s-ana",
        "sharer_ref": refs("ana"), "shared_at": "2026-11-16T11:00:00.000Z",
        "share_event_id": ids["s-ana"],
    }
    # And the others carry their reason: gus's credit is three days old, dan's second link came
    # after his first, eve's first was refunded, ana bought through her own link, fay's link
    # was never shared, jon's link went with him
    reasons = {e["order_id"]: e["reason"] for e in excluded}
    assert reasons == {
        "o7": "outside_window", "o2": "not_first_touch", "o3": "refunded",
        "o5": "self_referral", "o6": "unknown_link", "o9": "unknown_link",
    }
    by_order = {e["order_id"]: e for e in excluded}
    assert by_order["o2"]["credited_order_id"] == "o1"
    assert by_order["o2"]["sharer_ref"] == refs("ben")
    assert by_order["o3"]["cancelled"] is False
    assert by_order["o5"]["sharer_ref"] == by_order["o5"]["user_ref"] == refs("ana")
    assert "sharer_ref" not in by_order["o6"] and "sharer_ref" not in by_order["o9"]
    # And erased hal and jon, kim (no kept purchase of p) and zed (no link) are not listed
    text = json.dumps([counted, excluded])
    for who in ("hal", "jon", "kim", "zed"):
        assert refs(who) not in text
    assert not {"o8", "o10", "o11"} & {e["order_id"] for e in counted + excluded}
    # And over 7 days gus counts too
    value, counted, excluded = await every_page(
        explainer, "p", "bought_via_shares.7d", limit=1, now_ms=now_ms
    )
    assert value == 3 and [e["order_id"] for e in counted] == ["o4", "o1", "o7"]
    assert "outside_window" not in {e["reason"] for e in excluded}


def test_the_endpoint_and_the_cli_page_it_and_agree_with_the_proof_answer(
    settings: Settings, namespace: str, service_token: str
) -> None:
    from cli.main import app as cli_app
    from services.notifier.app import create_app

    notifier = NotifierSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers, redis_url=settings.redis_url,
        redis_namespace=namespace, service_token=settings.service_token,
    )

    async def apply(events: list[ev.Event]) -> None:
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            await apply_in_chunks(counter_store(client, namespace), events, 50)
        finally:
            await client.aclose()

    # Given the shop above, happening now (the endpoint reads at the clock's time)
    events, ids = hand_shop(datetime.now(UTC))
    asyncio.run(apply(events))
    with TestClient(create_app(notifier)) as client:
        client.headers["Authorization"] = f"Bearer {service_token}"
        proof = client.get("/v1/proof/products/p", headers={"Authorization": ""}).json()
        # When bought_via_shares.24h is read in pages of one buyer
        pages, params = [], {"figure": "bought_via_shares.24h", "limit": "1"}
        while True:
            response = client.get("/v1/proof/products/p/explain", params=params)
            assert response.status_code == 200, response.text
            pages.append(response.json())
            if pages[-1]["next"] is None:
                break
            params = {**params, "cursor": pages[-1]["next"]}
        # Then the pages add up to the served figure, and list the excluded events too
        counted = [e for page in pages for e in page["events"]]
        assert {page["value"] for page in pages} == {proof["bought_via_shares"]["24h"]} == {2}
        assert [e["order_id"] for e in counted] == ["o4", "o1"]
        assert len([e for page in pages for e in page["excluded"]]) == 6
        # And an unknown window is a 400 naming the figure
        bad = client.get("/v1/proof/products/p/explain",
                         params={"figure": "bought_via_shares.1h"})
        assert bad.status_code == 400 and bad.json()["fields"][0]["field"] == "figure"
    # When the CLI explains it against the namespace
    env = {
        "SOCIALPROOF_REDIS_URL": settings.redis_url,
        "SOCIALPROOF_REDIS_NAMESPACE": namespace,
        "SOCIALPROOF_SERVICE_TOKEN": service_token,
    }
    result = CliRunner().invoke(
        cli_app, ["explain", "p", "bought_via_shares.7d", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    # Then it counts gus too, with the same purchases' event ids
    assert cli["value"] == 3 and cli["next"] is None
    assert [e["event_id"] for e in cli["events"]] == [ids["o4"], ids["o1"], ids["o7"]]
    table = CliRunner().invoke(
        cli_app, ["explain", "p", "bought_via_shares.24h"], env={**env, "COLUMNS": "250"}
    )
    assert table.exit_code == 0 and "self_referral" in table.stdout
    assert "not_first_touch" in table.stdout
