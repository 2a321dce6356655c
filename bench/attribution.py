"""Bench scenario ``attribution``: what referral attribution and share-to-unlock promotions cost
the stream worker (issue #17 asks for at most 15 % of its throughput).

The same activity (``tools.loadgen``'s throughput mix: purchases, shares, reviews, refunds,
consent) is applied twice through the worker's own apply path (decode each record with the
contracts codec, build the script operations, apply them in chunks with the worker's batches in
flight) into fresh namespaces:

- ``plain``: the events as they are, no links, no promotions;
- ``referred``: every share carries a link token, ``referral_share`` of the purchases arrive
  through an earlier share of the same product by someone else (a few through the buyer's own
  link, which must not count), and a tenth of the products have an active promotion (goal 3
  buyers, a cap) so credits move promotion progress and earn rewards into the outbox.

The two run alternately ``rounds`` times each and the figures are medians: events/s of each,
their ratio, and Redis CPU per event (``INFO cpu`` of the server, which the bench owns unless it
runs on existing servers). Kafka's fetch is left out on purpose: it is the same bytes for both
(a link token adds ~30 bytes to a share) and only adds noise to the difference measured here.
Run: ``python -m bench --only attribution``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import timedelta

import redis as redis_sync
import redis.asyncio as aioredis

from bench.env import BenchEnv, delete_namespace, new_namespace
from bench.measure import THROUGHPUT_MIX
from bench.registry import Result, Target, scenario
from contracts import codec
from contracts import events as ev
from services.counters.store import CounterStore
from tools.loadgen import LoadConfig, LoadGenerator

#: decoded events per store call and calls in flight, as the worker does (services/counters/app.py)
APPLY_CHUNK = 250
IN_FLIGHT = 8


def _token(rng: random.Random) -> str:
    return "lk-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(26))


def with_referrals(
    events: list[ev.Event], referral_share: float, seed: int = 7
) -> tuple[list[ev.Event], int]:
    """The same events with link tokens on every share and ``referral_share`` of the purchases
    through an earlier share of one of their products (by someone else, or 5 % by the buyer
    themself). Returns the events and how many purchases carry a referral."""
    rng = random.Random(seed)
    links: dict[str, list[tuple[str, str]]] = {}  # product -> [(token, sharer)]
    out: list[ev.Event] = []
    referred = 0
    for event in events:
        if isinstance(event, ev.ProductShared):
            token = _token(rng)
            links.setdefault(event.payload.product_id, []).append((token, event.payload.user_id))
            event = event.model_copy(
                update={"payload": event.payload.model_copy(update={"link_token": token})}
            )
        elif isinstance(event, ev.PurchaseCompleted) and rng.random() < referral_share:
            product = event.payload.lines[0].product_id
            own = rng.random() < 0.05
            candidates = [
                t for t, sharer in links.get(product, ()) if (sharer == event.payload.user_id) == own
            ]
            if candidates:
                referred += 1
                event = event.model_copy(
                    update={
                        "payload": event.payload.model_copy(
                            update={"referral": rng.choice(candidates[-20:])}
                        )
                    }
                )
        out.append(event)
    return out, referred


def promotions(products: list[str], start: ev.Event, count: int) -> list[ev.Event]:
    """Active promotions (goal 3 buyers, at most 50 rewards) on ``count`` products, covering the
    activity's event times."""
    at = start.occurred_at
    return [
        ev.PromotionDefined.create(
            ev.PromotionFields(
                promotion_id=f"bench-promo-{i}",
                product_id=product,
                title="Share and get 10% off",
                sharer_reward=ev.RewardSpec(kind="percent", value="10"),
                goal=ev.PromotionGoal(buyers=3),
                starts_at=at - timedelta(days=1),
                ends_at=at + timedelta(days=30),
                max_rewards=50,
            ),
            producer="catalog",
            occurred_at=at - timedelta(days=1),
        )
        for i, product in enumerate(products[:count])
    ]


async def _apply_all(store: CounterStore, raw: list[bytes]) -> float:
    """Decode and apply ``raw`` the worker's way, reward transitions into the namespace's outbox
    as a live worker writes them; seconds taken."""
    started = time.perf_counter()
    in_flight: list[asyncio.Future] = []
    chunk: list[ev.Event] = []
    for value in raw:
        chunk.append(codec.decode(value))
        if len(chunk) >= APPLY_CHUNK:
            in_flight.append(asyncio.ensure_future(store.apply(chunk, emit=True)))
            chunk = []
            if len(in_flight) >= IN_FLIGHT:
                await in_flight.pop(0)
            await asyncio.sleep(0)
    if chunk:
        in_flight.append(asyncio.ensure_future(store.apply(chunk, emit=True)))
    await asyncio.gather(*in_flight)
    return time.perf_counter() - started


async def _lazy_free_done(redis: aioredis.Redis, deadline_s: float = 30.0) -> None:
    until = time.monotonic() + deadline_s
    while (await redis.info("memory")).get("lazyfree_pending_objects", 0) and (
        time.monotonic() < until
    ):
        await asyncio.sleep(0.05)


async def _redis_cpu_s(redis: aioredis.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _measure(env: BenchEnv, variants: dict[str, list[bytes]], rounds: int) -> dict:
    """``rounds`` measured rounds after one warm-up round (a fresh Redis grows its memory on the
    first writes: measured, the first run of either variant took 1.5-2x the CPU per event of
    the same run later). The order alternates each round and each run's namespace is deleted
    after it (waiting for Redis' lazy free), so every run starts from the same memory."""
    redis = aioredis.Redis.from_url(env.settings.redis_url, decode_responses=True)
    sync = redis_sync.Redis.from_url(env.settings.redis_url)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    names = list(variants)
    try:
        for round_no in range(rounds + 1):
            for name in names if round_no % 2 else names[::-1]:
                namespace = new_namespace()
                store = CounterStore(redis, namespace, coupon_secret="bench-coupon-secret")
                cpu0 = await _redis_cpu_s(redis)
                seconds = await _apply_all(store, variants[name])
                cpu = await _redis_cpu_s(redis) - cpu0
                if round_no:
                    runs[name].append((seconds, cpu))
                delete_namespace(sync, namespace)
                await _lazy_free_done(redis)
    finally:
        await redis.aclose()
        sync.close()
    figures: dict = {}
    for name, raw in variants.items():
        figures[f"{name}_events_per_s"] = round(
            statistics.median(len(raw) / s for s, _ in runs[name])
        )
        figures[f"{name}_redis_cpu_us_per_event"] = round(
            statistics.median(cpu / len(raw) * 1e6 for _, cpu in runs[name]), 1
        )
    return figures


@scenario(
    "attribution",
    "referral attribution and promotions: the worker's apply path with and without them",
    repeats=1,
)
def attribution(env: BenchEnv, quick: bool) -> Result:
    n = 4_000 if quick else 60_000
    rounds = 1 if quick else 5
    cfg = LoadConfig(
        seed=13,
        users=300 if quick else 10_000,
        products=60 if quick else 1_000,
        mean_friends=5,
        mix=THROUGHPUT_MIX,
    )
    gen = LoadGenerator(cfg)
    activity = list(gen.activity_events(n))
    referred_events, referred = with_referrals(activity, referral_share=0.3)
    products = sorted({e.payload.lines[0].product_id for e in activity
                       if isinstance(e, ev.PurchaseCompleted)})
    promos = promotions(products, activity[0], max(1, len(products) // 10))
    variants = {
        "plain": [codec.encode(e) for e in activity],
        "referred": [codec.encode(e) for e in promos + referred_events],
    }
    figures = asyncio.run(_measure(env, variants, rounds))
    figures.update(
        events=n,
        rounds=rounds,
        referred_purchases=referred,
        promotions=len(promos),
        redis_cpu_measured=not env.existing,
    )
    figures["cost_pct"] = round(
        100 * (1 - figures["referred_events_per_s"] / max(1, figures["plain_events_per_s"])), 1
    )
    return Result(
        ingest={
            "plain_events_per_s": "worker apply path without attribution (no Kafka fetch)",
            "referred_events_per_s": "worker apply path with attribution (no Kafka fetch)",
        },
        summary=lambda f: (
            f"with attribution {f['referred_events_per_s']:,} ev/s vs without "
            f"{f['plain_events_per_s']:,} ev/s: costs {f['cost_pct']} % of throughput; Redis "
            f"{f['referred_redis_cpu_us_per_event']} vs {f['plain_redis_cpu_us_per_event']} "
            f"us CPU/event (medians of {f['rounds']} alternating rounds after a warm-up)"
        ),
        figures=figures,
        targets=[Target("cost_pct", "<", 15.0, " %")],
        notes=[
            "the worker's apply path (decode, operations, chunked scripts with batches in "
            "flight) in-process against the bench's Redis; Kafka fetch left out (same bytes)",
            "referred: 30 % of purchases through an earlier share's link (5 % of those the "
            "buyer's own link), every share with a token, promotions on a tenth of the products",
        ],
    )
