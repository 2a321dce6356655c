"""Bench scenario ``burst_lag``: a worker under steady traffic gets 100,000-event bursts; how high
the lag (in seconds) goes, and how soon after the burst it is back under 1 s.
Run: ``python -m bench --only burst_lag``.
"""

from __future__ import annotations

import bisect
import statistics
import threading
import time

from bench.env import Background, BenchEnv, encode_all
from bench.measure import THROUGHPUT_MIX
from bench.registry import Result, Target, scenario
from tools.loadgen import LoadConfig, LoadGenerator


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
