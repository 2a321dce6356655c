"""Bench scenario ``friends_bought``: the read for a 5,000-friend viewer on a 1,000,000-buyer
product (fanned out on write), and for a viewer just below the fan-out threshold (intersected),
latency percentiles at the client and inside Redis. How the cost grows with friends and buyers
is scenario ``scaling`` (:mod:`bench.scaling`). Run: ``python -m bench --only friends_bought``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import redis.asyncio as aioredis

from bench.env import BenchEnv, new_namespace
from bench.registry import Result, Target, scenario
from contracts.views import FRIENDS_FANOUT_AT
from services.counters.store import CounterStore
from services.notifier.proof import ProofReader


async def _seed_friends_bought(
    store: CounterStore, product: str, buyers_n: int, viewers: dict[str, list[str]]
) -> float:
    """Through the processor's own script (so that the fan-out is what a worker builds): one
    purchase of ``product`` by each of u0..u{buyers_n-1}, who share purchases with friends (the
    shop's default here), then first names and the friendships of ``viewers``; returns the
    seconds it took."""
    started = time.perf_counter()
    ts = int(time.time() * 1000) - 3_600_000
    for start in range(0, buyers_n, 20_000):
        await store.apply_operations(
            [
                ["P", f"o{i}", f"u{i}", ts, [product, 1]]
                for i in range(start, min(buyers_n, start + 20_000))
            ]
        )
    everyone = sorted({f for friends in viewers.values() for f in friends})
    ops: list[list] = [["N", f, "Ana", ts, f"n-{f}"] for f in everyone]
    ops += [["F", 1, v, f, ts, f"f-{v}-{f}"] for v, friends in viewers.items() for f in friends]
    for start in range(0, len(ops), 5_000):
        await store.apply_operations(ops[start : start + 5_000])
    return time.perf_counter() - started


async def _friends_latency(env: BenchEnv, quick: bool) -> dict:
    # --quick still needs viewers at the fan-out threshold, just fewer buyers
    buyers_n, friends_n = (20_000, FRIENDS_FANOUT_AT) if quick else (1_000_000, 5_000)
    redis = aioredis.Redis.from_url(env.settings.redis_url, decode_responses=True)
    reader = ProofReader(redis, new_namespace())
    store = CounterStore(redis, reader.keys.ns, default_share_purchases=True)
    # Redis' own timings change server-wide state (CONFIG RESETSTAT, the slow log's CONFIG SET):
    # never on servers shared with others
    server_side = not env.existing
    keys = reader.keys
    rng = random.Random(5)
    product = "p-hot"
    # the viewer: a tenth of their friends bought the product; a second viewer with few
    # overlapping friends; a third just below the fan-out threshold, read by intersection
    below_n = FRIENDS_FANOUT_AT - 1

    def friends(n: int, bought: int) -> list[str]:
        """``n`` friends: ``bought`` random buyers, the rest users who bought nothing."""
        buyers = [f"u{rng.randrange(buyers_n)}" for _ in range(bought)]
        return buyers + [f"f{i}" for i in range(n - bought)]

    viewers = {
        "viewer": friends(friends_n, friends_n // 10),
        "viewer-sparse": friends(friends_n, 20),
        "viewer-below": friends(below_n, below_n // 10),
    }
    seed_s = await _seed_friends_bought(store, product, buyers_n, viewers)
    fanned = await redis.smembers(keys.fanout)
    if fanned != {"viewer", "viewer-sparse"}:
        raise RuntimeError(f"expected the two big viewers to be fanned out, not {fanned}")
    figures: dict = {
        "buyers": buyers_n,
        "friends": friends_n,
        "below_friends": below_n,
        "seed_s": round(seed_s, 1),
    }
    calls = 200 if quick else 2_000
    for label, who in (("dense", "viewer"), ("sparse", "viewer-sparse"), ("below", "viewer-below")):
        for _ in range(50):  # warm up (script cache, connection)
            await reader.friends_bought(who, product)
        # the client's view first, with nothing else switched on in Redis
        times: list[float] = []
        count = 0
        for _ in range(calls):
            t0 = time.perf_counter()
            count, _names = await reader.friends_bought(who, product)
            times.append((time.perf_counter() - t0) * 1000)
        # then the same reads timed inside Redis (the slow log costs Redis a little per command)
        inside: list[float] = []
        if server_side:
            await _record_every_command(redis)
            for i in range(calls):
                await reader.friends_bought(who, product)
                if (i + 1) % LOG_EVERY == 0:
                    inside += await _take_recorded_ms(redis, "evalsha")
            inside += await _take_recorded_ms(redis, "evalsha")
            await _stop_recording(redis)
            if len(inside) != calls:
                raise RuntimeError(f"the slow log kept {len(inside)} of {calls} calls")
            inside.sort()
        times.sort()
        figures[f"{label}_count"] = count
        figures[f"{label}_p50_ms"] = round(statistics.median(times), 3)
        figures[f"{label}_p99_ms"] = round(times[int(len(times) * 0.99) - 1], 3)
        figures[f"{label}_max_ms"] = round(times[-1], 3)
        if server_side:
            figures[f"{label}_redis_p50_ms"] = round(statistics.median(inside), 3)
            figures[f"{label}_redis_p99_ms"] = round(inside[int(len(inside) * 0.99) - 1], 3)
    # the intersection alone, as Redis reports it (no client overhead)
    figures["sintercard_server_usec_per_call"] = None
    if server_side:
        await redis.config_resetstat()
        for _ in range(calls):
            await redis.execute_command(
                "SINTERCARD", 2, keys.friends("viewer"), keys.consenting_buyers(product)
            )
        stats = await redis.info("commandstats")
        sinter = stats.get("cmdstat_sintercard", {})
        figures["sintercard_server_usec_per_call"] = sinter.get("usec_per_call")
    figures["p99_ms"] = max(figures[f"{label}_p99_ms"] for label in ("dense", "sparse", "below"))
    await redis.aclose()
    return figures


#: reads between two readings of the slow log: it also logs the commands a script runs (the
#: intersection and each name lookup), and keeps only the newest slowlog-max-len entries
LOG_EVERY = 100


async def _record_every_command(redis: aioredis.Redis) -> None:
    """Have Redis log the run time of every command from now on (the slow log with a threshold
    of 0 us); ``_take_recorded_ms`` reads it, ``_stop_recording`` restores Redis' defaults."""
    await redis.config_set("slowlog-max-len", 10_000)
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.slowlog_reset()


async def _take_recorded_ms(redis: aioredis.Redis, command: str) -> list[float]:
    """Run times (ms) of ``command`` inside Redis since the last reading, exact to the
    microsecond: no client, no socket, no scheduling of the client process."""
    entries = await redis.slowlog_get(-1)
    await redis.slowlog_reset()
    return [e["duration"] / 1000 for e in entries if _command_name(e["command"]) == command]


def _command_name(logged: bytes | str) -> str:
    text = logged.decode() if isinstance(logged, bytes) else str(logged)
    return text.split(" ", 1)[0].lower()


async def _stop_recording(redis: aioredis.Redis) -> None:
    await redis.config_set("slowlog-log-slower-than", 10_000)  # Redis' defaults again
    await redis.config_set("slowlog-max-len", 128)
    await redis.slowlog_reset()


@scenario("friends_bought", "friends_bought for a 5,000-friend viewer on a 1,000,000-buyer product")
def friends_bought(env: BenchEnv, quick: bool) -> Result:
    figures = asyncio.run(_friends_latency(env, quick))
    return Result(
        summary=lambda f: (
            f"{f['friends']:,} friends x {f['buyers']:,} buyers (fanned out): p50 "
            f"{f['dense_p50_ms']} ms, p99 {f['dense_p99_ms']} ms (client round trip incl. "
            f"names), inside Redis p99 {f.get('dense_redis_p99_ms')} ms; "
            f"{f['below_friends']:,} friends (intersection): p50 {f['below_p50_ms']} ms, p99 "
            f"{f['below_p99_ms']} ms; worst p99 {f['p99_ms']} ms; the same {f['friends']:,}-friend "
            f"intersection (SINTERCARD) would take {f['sintercard_server_usec_per_call']} us"
        ),
        figures=figures,
        targets=[Target("p99_ms", "<", 2.0, " ms")],
        notes=[
            "three viewers of the same 1,000,000-buyer product: `dense` (5,000 friends, a tenth "
            "bought it) and `sparse` (5,000 friends, 20 bought it) are above the fan-out "
            "threshold, so the worker keeps their answer; `below` has one friendship fewer than "
            "the threshold and is read by intersection, the slowest read any viewer gets",
            "seeded through the processor's script (`seed_s`): the purchases, then first names "
            "and friendships",
            "`sintercard_server_usec_per_call`: what the 5,000-friend read cost when every "
            "viewer was intersected (INFO commandstats, no client)",
        ],
    )
