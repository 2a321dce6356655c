"""The benchmark scenarios. Add one with ``@scenario(name, description)``; see :mod:`bench.registry`.

- ``throughput``: one batched worker vs the per-event baseline on the same pre-produced events
  (purchases, shares, reviews… from :mod:`tools.loadgen`: 10,000 users, 1,000 products,
  Zipf, 150 friends on average), events/s each and the ratio.
- ``burst_lag``: a worker under steady traffic gets 100,000-event bursts; how high the lag (in
  seconds) goes, and how soon after the burst it is back under 1 s.
- ``friends_bought``: the read for a 5,000-friend viewer on a 1,000,000-buyer product (fanned out
  on write), and for a viewer just below the fan-out threshold (intersected), latency
  percentiles at the Redis call.

Others: :mod:`bench.notifier` (SSE fan-out, read API), :mod:`bench.e2e` (order accepted → SSE
client), :mod:`bench.scaling` (friends_bought as friends and buyers grow).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import statistics
import threading
import time

import redis.asyncio as aioredis

from bench.env import Background, BenchEnv, encode_all, new_namespace
from bench.registry import Result, Target, scenario
from contracts.views import FRIENDS_FANOUT_AT
from services.counters.settings import CountersSettings
from services.counters.store import CounterStore, operation
from services.notifier.proof import ProofReader
from tools.loadgen import LoadConfig, LoadGenerator

THROUGHPUT_MIX = {"purchase": 0.45, "share": 0.35, "review": 0.15, "refund": 0.03, "consent": 0.02}


def _rate(samples: list[tuple[float, int]], start_count: int = 0) -> tuple[float, float]:
    """(events/s, seconds) from the last sample still at ``start_count`` (the start of work,
    to within one polling interval) to the last sample."""
    idle = [(t, c) for t, c in samples if c <= start_count]
    moving = [(t, c) for t, c in samples if c > start_count]
    if not moving:
        return 0.0, 0.0
    t0, c0 = idle[-1] if idle else moving[0]
    t1, c1 = moving[-1]
    return ((c1 - c0) / (t1 - t0) if t1 > t0 else 0.0), t1 - t0


async def _seed_graph(env: BenchEnv, ops: list[list], namespace: str) -> None:
    """First names, consent and the friendship graph, written through the store directly: the
    graph is setup, not what is measured. With the worker's fan-out threshold, so that the
    viewers it would fan out are (their purchases' extra writes are part of what is measured)."""
    redis = aioredis.Redis.from_url(env.settings.redis_url, decode_responses=True)
    store = CounterStore(redis, namespace, fanout_at=CountersSettings().worker_friends_fanout_at)
    for start in range(0, len(ops), 5000):
        await store.apply_operations(ops[start : start + 5000])
    await redis.aclose()


def _window_rates(
    samples: list[tuple[float, int]],
    windows: int,
    per_window: int | None = None,
    seconds: float | None = None,
) -> list[float]:
    """Events/s in consecutive windows of one run: ``per_window`` events each (a worker with a
    backlog it finishes) or ``seconds`` each (the baseline, which never finishes it). The first
    window starts at the last sample before any work (the start of work, to one poll)."""
    idle = [s for s in samples if s[1] <= 0]
    start = idle[-1] if idle else samples[0]
    rates = []
    for k in range(1, windows + 1):
        if per_window is not None:
            end = next((s for s in samples if s[1] >= k * per_window), None)
        else:
            assert seconds is not None
            t_end = (idle[-1] if idle else samples[0])[0] + k * seconds
            later = [s for s in samples if s[0] <= t_end]
            end = later[-1] if later and later[-1][0] > start[0] else None
        if end is None or end[0] <= start[0]:
            break
        rates.append((end[1] - start[1]) / (end[0] - start[0]))
        start = end
    return rates


@scenario("throughput", "events/s through one batched worker vs the per-event baseline", repeats=1)
def throughput(env: BenchEnv, quick: bool) -> Result:
    """The graph (770,000 set-up operations) is seeded once per worker, so instead of repeating
    the whole scenario each worker is measured over one backlog: the batched worker over all
    3 x 100,000 events, the baseline over 3 x 15 s (it is too slow to finish a backlog). The
    headline is the rate over the whole backlog (events / seconds from the first to the last);
    the rates of the three windows are listed beside it. They differ a lot (47k / 33k / 14k
    ev/s in one run) because the worker reads the topics' partitions unevenly, so the windows
    hold different mixes: measured once, the first held none of the 6,000 consent changes (the
    costliest events) and the second all of them, and the last 56k purchases against 39k in
    the first. A median of windows reports whichever mix fell in the middle."""
    n = 2_000 if quick else 100_000
    windows = 1 if quick else 3
    baseline_window_s = 15.0
    cfg = LoadConfig(
        seed=11,
        users=200 if quick else 10_000,
        products=50 if quick else 1_000,
        mean_friends=10 if quick else 150,
        mix=THROUGHPUT_MIX,
    )
    gen = LoadGenerator(cfg)
    setup_ops = [operation(e) for e in gen.setup_events()]
    records = encode_all(gen.activity_events(n * windows))
    env.produce(records)
    figures: dict = {
        "events_per_window": n,
        "windows": windows,
        "inner_runs": windows,
        "graph_setup_operations": len(setup_ops),
    }
    for label, per_event in (("batched", False), ("baseline", True)):
        namespace = new_namespace()
        asyncio.run(_seed_graph(env, setup_ops, namespace))
        started = time.monotonic()
        worker = env.start_worker(per_event=per_event, namespace=namespace)
        if per_event and not quick:
            samples = env.wait_processed(
                worker, n * windows, timeout=windows * baseline_window_s + 1.0
            )
            rates = _window_rates(samples, windows, seconds=baseline_window_s)
        else:
            samples = env.wait_processed(worker, n * windows, timeout=300.0)
            if samples and samples[0][1] >= n:
                # A small backlog (the smoke run) can be done before the first poll: then the
                # window starts when the worker was started (start-up included, so lower).
                samples.insert(0, (started, 0))
            rates = _window_rates(samples, windows, per_window=n)
        figures[f"{label}_events_per_s"] = round(_rate(samples)[0])
        figures[f"{label}_window_events_per_s"] = [round(r) for r in rates]
        figures[f"{label}_processed"] = samples[-1][1] if samples else 0
        env.stop_worker(worker)
    base = figures["baseline_events_per_s"] or 1
    figures["ratio"] = round(figures["batched_events_per_s"] / base, 1)
    return Result(
        summary=lambda f: (
            f"batched {f['batched_events_per_s']:,} ev/s vs per-event baseline "
            f"{f['baseline_events_per_s']:,} ev/s = {f['ratio']}x (over "
            f"{f['windows'] * f['events_per_window']:,} events / "
            f"{f['windows'] * baseline_window_s:g} s; windows: "
            f"{' / '.join(f'{r:,}' for r in f['batched_window_events_per_s'])} ev/s)"
        ),
        figures=figures,
        targets=[Target("batched_events_per_s", ">=", 20_000, " ev/s")],
        notes=[
            "one worker process, embedded broker and Redis on the same 2 cores; events: "
            "purchases 45 %, shares 35 %, reviews 15 %, refunds 3 %, consent 2 % over 10,000 "
            "users, 1,000 products (Zipf), 150 friends on average",
            "one run per worker (the graph seeding is too costly to repeat): `*_events_per_s` "
            "over the whole backlog, `*_window_events_per_s` per consecutive window (they vary "
            "with the event mix each window happens to hold)",
        ],
    )


def lag_seconds(times: list[float], acked: list[int], t: float, applied: int) -> float:
    """How far behind the worker is at ``t``, in seconds: ``t`` minus the time by which as many
    events had been acknowledged as it has now applied (rounded up to one sampling interval).
    ``times``/``acked`` sample the cumulative acknowledged count, oldest first, up to ``t``."""
    k = bisect.bisect_right(acked, applied) - 1
    if k == len(acked) - 1:
        return 0.0  # everything acknowledged so far is applied
    return max(0.0, t - times[max(k, 0)])


@scenario(
    "burst_lag",
    "lag around a 100,000-event burst on top of steady traffic: its peak, and how soon it is "
    "back under 1 s",
    repeats=1,
)
def burst_lag(env: BenchEnv, quick: bool) -> Result:
    """One worker under steady background traffic (5,000 ev/s) gets three bursts, each once it
    has been under 1 s of lag for a while; the figures are the medians over the bursts.

    Lag is measured in time, the way an operator reads it: at each poll, how long ago the oldest
    event not yet applied was acknowledged to its producer (from the worker's applied count and
    the producers' acknowledged counts; :func:`lag_seconds`)."""
    rate = 200 if quick else 5_000
    burst = 2_000 if quick else 100_000
    bursts = 1 if quick else 3
    steady_s, settle_s, interval = (1.0, 1.0, 0.05) if quick else (3.0, 5.0, 0.05)
    cfg = LoadConfig(
        seed=12, users=200 if quick else 10_000, products=50 if quick else 1_000, mix=THROUGHPUT_MIX
    )
    gen = LoadGenerator(cfg)
    warmup = 500 if quick else 5_000
    worker = env.start_worker()
    env.produce(encode_all(gen.activity_events(warmup)))
    env.wait_processed(worker, warmup, timeout=120)
    base = env.processed(worker)
    # background records for the longest this can run, never recycled: duplicates would cost the
    # worker less than new events do
    background = Background(env, encode_all(gen.activity_events(rate * (40 if quick else 120))))
    burst_records = [encode_all(gen.activity_events(burst)) for _ in range(bursts)]
    feeder = threading.Thread(
        target=background.run, args=(rate, len(background.records) / rate), daemon=True
    )
    times: list[float] = []
    acked: list[int] = []
    applied: list[int] = []
    lags: list[float] = []
    own_lags: list[float] = []  # the worker's socialproof_processor_lag_seconds, for comparison
    burst_acked = [0]

    def sample() -> tuple[float, float]:
        worker.proc.ensure_alive()
        a = background.acked + burst_acked[0]  # read first: nothing applied is unacknowledged
        n, own = env.worker_metrics(worker)
        n -= base
        t = time.monotonic()
        times.append(t)
        acked.append(a)
        applied.append(n)
        own_lags.append(own)
        lags.append(lag_seconds(times, acked, t, n))
        return t, lags[-1]

    runs: list[dict] = []
    feeder.start()
    try:
        for records in burst_records:
            steady_from = len(lags)
            t, _ = sample()
            steady_until = t + steady_s
            while t < steady_until:
                time.sleep(interval)
                t, _ = sample()
            steady_max = max(lags[steady_from:])
            first = len(lags)
            acks: list[float] = []
            producer = threading.Thread(
                target=lambda r=records, a=acks: a.append(env.produce(r, burst_acked)), daemon=True
            )
            started = time.monotonic()
            producer.start()
            # back under 1 s once the burst is acknowledged, and staying there for settle_s
            under_since: float | None = None
            while t < started + 120:
                time.sleep(interval)
                t, lag = sample()
                if not acks:
                    continue
                under_since = None if lag >= 1.0 else (under_since or t)
                if under_since is not None and t - under_since >= settle_s:
                    break
            producer.join(10)
            if not acks:
                raise RuntimeError("the burst was not acknowledged within 2 minutes")
            last_ack = acks[0]
            window = range(first, len(lags))
            # everything acknowledged by the burst's last ack (the burst and the background so far)
            owed = next(acked[i] for i in window if times[i] >= last_ack)
            drained = next((times[i] for i in window if applied[i] >= owed), None)
            runs.append(
                {
                    "produce_seconds": round(last_ack - started, 2),
                    "produce_events_per_s": round(burst / (last_ack - started)),
                    "steady_lag_max_s": round(steady_max, 2),
                    "peak_lag_s": round(max(lags[i] for i in window), 2),
                    "worker_lag_gauge_peak_s": round(max(own_lags[i] for i in window), 2),
                    "lag_back_under_1s_s": (
                        round(max(0.0, under_since - last_ack), 2) if under_since else None
                    ),
                    "drain_after_burst_s": (
                        round(max(0.0, drained - last_ack), 2) if drained else None
                    ),
                    "recovered": int(under_since is not None),
                    # (seconds since the burst started, lag), every 4th poll, for the plot
                    "timeline": [
                        [round(times[i] - started, 2), round(lags[i], 2)]
                        for i in window
                        if (i - first) % 4 == 0
                    ],
                }
            )
    finally:
        background.stopped = True
        feeder.join(10)
    if background.failures:
        raise RuntimeError(f"background produce failed: {background.failures[:3]}")
    figures: dict = {
        "burst_events": burst,
        "bursts": bursts,
        "inner_runs": bursts,
        "background_events_per_s": rate,
        "recovered_bursts": sum(r["recovered"] for r in runs),
        "timelines": [r.pop("timeline") for r in runs],
    }
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        figures[key] = statistics.median(values) if len(values) == len(runs) else None
        figures[f"{key}_each"] = [r[key] for r in runs]
    return Result(
        summary=lambda f: (
            f"{f['burst_events']:,}-event burst (acknowledged in {f['produce_seconds']} s) on "
            f"top of {f['background_events_per_s']:,} ev/s: lag peaked at {f['peak_lag_s']} s "
            f"and was back under 1 s {f['lag_back_under_1s_s']} s after the burst's last ack, "
            f"staying there ({f['recovered_bursts']}/{f['bursts']} bursts); before each burst "
            f"at most {f['steady_lag_max_s']} s (medians of {f['bursts']} bursts)"
        ),
        figures=figures,
        targets=[Target("recovered_bursts", ">=", bursts)],
        notes=[
            "lag = how long ago the oldest event not yet applied was acknowledged to its "
            "producer, polled every 50 ms; `*_each` per burst, `timelines` (seconds since the "
            "burst started, lag) per burst",
            "`worker_lag_gauge_peak_s`: the peak of the worker's own lag gauge "
            "(socialproof_processor_lag_seconds: age of the newest record of the last committed "
            "batch, from Kafka timestamps), what an operator's dashboard shows for the same burst",
            "the target is the issue's 'lag back under 1 s after a 100,000-event burst': after "
            "each burst the lag comes back under 1 s and stays under it (for 5 s) while the "
            "background traffic goes on",
            "a stricter reading, lag under 1 s within 1 s of the burst's last ack, is not met: "
            "the producer acknowledges the burst in about a second, so that needs ~50,000 ev/s "
            "applied, 2.5x the sustained target, where Redis alone costs ~25-35 us an event on "
            "this machine; `lag_back_under_1s_s` is how far from it the worker is",
        ],
    )


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


# The notifier's scenarios (sse_fanout, sse_fanout_x5, read_api), end-to-end latency, the
# friends_bought scaling curves and Faust exactly-once vs the worker live beside these; importing
# registers them after these.
from bench import e2e as _e2e  # noqa: E402, F401
from bench import faust_eos as _faust_eos  # noqa: E402, F401
from bench import notifier as _notifier  # noqa: E402, F401
from bench import scaling as _scaling  # noqa: E402, F401
