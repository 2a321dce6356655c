"""Bench scenario ``throughput``: on ONE produced backlog (purchases, shares, reviews… from
:mod:`tools.loadgen`: 10,000 users, 1,000 products, Zipf, 150 friends on average; 300,000
events), in turn: the limit (:func:`bench.limit.measure_limit`: what the machine can do at all),
our batched worker, the Quix Streams peer (:func:`bench.quix_peer.measure_peer`, the same core
counters with its own state store and exactly-once, checked against the oracle) and the per-event
baseline (:mod:`bench.baseline_worker`, the way Faust's examples process a stream). For each:
events/s, the fraction of the limit, the ratios to the peer and the baseline, CPU µs per event
(its process, and Redis on the bench's own redis-server), peak RSS.

The limit is measured three times, alternating with the others (limit, worker, limit, peer,
limit, baseline) and its median taken, so the fractions compare figures of the same minutes on
this shared machine. Run: ``python -m bench --only throughput``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis as redis_sync
import redis.asyncio as aioredis

from bench.env import BenchEnv, Worker, encode_all, new_namespace
from bench.limit import measure_limit, median_of, throughput_workload
from bench.measure import cpu_seconds, peak_rss_mb
from bench.registry import Result, Target, scenario
from services.counters.settings import CountersSettings
from services.counters.store import CounterStore, operation
from socialproof.kafka import topic_name


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


#: who ingests, per figure: the lines make bench states as a fraction of the limit
INGEST = {
    "batched_events_per_s": "our worker",
    "peer_events_per_s": "Quix Streams peer",
    "baseline_events_per_s": "per-event baseline",
}


def _follow(
    env: BenchEnv, worker: Worker, target: int, timeout: float, redis: Any | None
) -> list[tuple[float, int, float, float]]:
    """Poll the worker until it applied ``target`` events (or ``timeout``): samples of
    (monotonic, events applied, its process CPU seconds, Redis CPU seconds or 0). The CPU
    counters are read only where :func:`_costs` needs them, before the work starts and at the
    last sample (elsewhere NaN), so the polling adds nothing to the timed span but the count."""
    assert worker.proc.proc is not None
    pid = worker.proc.proc.pid
    nan = float("nan")
    samples: list[tuple[float, int, float, float]] = []
    deadline = time.monotonic() + timeout
    while True:
        worker.proc.ensure_alive()
        count = env.processed(worker)
        started = bool(samples) and samples[-1][1] > 0
        ending = count >= target or time.monotonic() >= deadline
        if started and not ending:
            samples.append((time.monotonic(), count, nan, nan))
        else:
            samples.append((time.monotonic(), count, cpu_seconds(pid), _redis_cpu_s(redis)))
        if ending:
            return samples
        time.sleep(0.05)


def _redis_cpu_s(redis: Any | None) -> float:
    if redis is None:
        return 0.0
    info = redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _costs(samples: list[tuple[float, int, float, float]], with_redis: bool) -> dict[str, Any]:
    """CPU µs per event of the worker process (and Redis) over the span :func:`_rate` times:
    from the last sample before any work (or the first) to the last."""
    idle = [s for s in samples if s[1] <= 0]
    moving = [s for s in samples if s[1] > 0]
    if not moving:
        return {}
    first, last = idle[-1] if idle else moving[0], moving[-1]
    events = last[1] - first[1]
    if events <= 0 or first[2] != first[2]:  # NaN: no CPU reading at the start of work
        return {}
    costs = {"cpu_us_per_event": round((last[2] - first[2]) / events * 1e6, 1)}
    if with_redis:
        costs["redis_cpu_us_per_event"] = round((last[3] - first[3]) / events * 1e6, 1)
    return costs


def comparisons(figures: dict[str, Any]) -> dict[str, Any]:
    """Each ingest figure's fraction of the limit (%) and our worker's ratios to the peer and
    to the baseline, from ``figures`` (a figure that is missing or 0 gives none)."""
    out: dict[str, Any] = {}
    limit = figures.get("limit_events_per_s") or 0
    for key in INGEST:
        label = key.removesuffix("_events_per_s")
        rate = figures.get(key)
        if isinstance(rate, int | float) and limit > 0:
            out[f"{label}_pct_of_limit"] = round(100 * rate / limit, 1)
    ours = figures.get("batched_events_per_s")
    for other, name in (("peer", "vs_peer"), ("baseline", "ratio")):
        theirs = figures.get(f"{other}_events_per_s")
        if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs > 0:
            out[name] = round(ours / theirs, 2 if other == "peer" else 1)
    return out


def _measure_worker(
    env: BenchEnv,
    label: str,
    setup_ops: list[list],
    total: int,
    windows: int,
    window_s: float | None,
) -> dict[str, Any]:
    """One worker over the backlog (``window_s``: only that many seconds per window, for the
    baseline, which is too slow to finish it): its figures under ``label_``."""
    namespace = new_namespace()
    asyncio.run(_seed_graph(env, setup_ops, namespace))
    redis = None if env.existing else redis_sync.Redis.from_url(env.settings.redis_url)
    started = time.monotonic()
    worker = env.start_worker(per_event=label == "baseline", namespace=namespace)
    try:
        if window_s is not None:
            samples = _follow(env, worker, total, windows * window_s + 1.0, redis)
        else:
            samples = _follow(env, worker, total, 300.0, redis)
            if samples and samples[0][1] >= total // windows:
                # A small backlog (the smoke run) can be done before the first poll: then the
                # window starts when the worker was started (start-up included, so lower).
                # (no CPU figures then: the process's CPU at the start of work is unknown)
                samples.insert(0, (started, 0, float("nan"), float("nan")))
        assert worker.proc.proc is not None
        peak = peak_rss_mb(worker.proc.proc.pid)
    finally:
        env.stop_worker(worker)
        if redis is not None:
            redis.close()
    counts = [(t, c) for t, c, _, _ in samples]
    if window_s is not None:
        rates = _window_rates(counts, windows, seconds=window_s)
    else:
        rates = _window_rates(counts, windows, per_window=total // windows)
    costs = _costs(samples, with_redis=redis is not None)
    return {
        f"{label}_events_per_s": round(_rate(counts)[0]),
        f"{label}_window_events_per_s": [round(r) for r in rates],
        f"{label}_processed": samples[-1][1] if samples else 0,
        **{f"{label}_{k}": v for k, v in costs.items()},
        f"{label}_rss_mb": round(peak, 1),
    }


def _measure_peer(env: BenchEnv, topics: list[str], events: list, expected: int) -> dict[str, Any]:
    """The Quix Streams peer's figures under ``peer_``, or ``peer_unavailable`` saying why it
    was not measured (its module or ``.venv-peer`` missing, or it failed: the other figures of
    the run stay worth having)."""
    try:
        from bench import quix_peer
    except ImportError as exc:
        return {"peer_unavailable": f"bench.quix_peer cannot be imported: {exc}"}
    try:
        got = quix_peer.measure_peer(env, topics, expected, events)
    except quix_peer.PeerUnavailable as exc:
        return {"peer_unavailable": str(exc)}
    except Exception as exc:  # noqa: BLE001 — reported in the figures and the summary
        return {"peer_unavailable": f"the peer failed: {type(exc).__name__}: {exc}"}
    figures = {
        "peer_events_per_s": round(got["events_per_s"]),
        "peer_cpu_us_per_event": got.get("cpu_us_per_event"),
        "peer_rss_mb": got.get("peak_rss_mb", got.get("rss_mb")),
        # its answers are visible once committed (exactly-once): the rate to that instant
        "peer_events_per_s_to_committed": got.get("events_per_s_to_committed"),
        "peer_start_to_first_s": got.get("start_to_first_s"),
        "peer_products_checked": got.get("products_checked"),
        "peer_products_wrong": got.get("products_wrong"),
    }
    return {k: v for k, v in figures.items() if v is not None}


def summarize(f: dict[str, Any]) -> str:
    """The one-line summary of the throughput figures (also of their medians)."""

    def pct(label: str) -> str:
        value = f.get(f"{label}_pct_of_limit")
        return f" ({value:g} % of the limit)" if value is not None else ""

    parts = [
        f"limit {f['limit_events_per_s']:,} ev/s",
        f"our worker {f['batched_events_per_s']:,}{pct('batched')}",
    ]
    if "peer_events_per_s" in f:
        parts.append(
            f"Quix peer {f['peer_events_per_s']:,}{pct('peer')}, "
            f"{f.get('peer_products_wrong', '?')} products wrong"
        )
    else:
        parts.append(f"peer unavailable ({f.get('peer_unavailable', '?')[:80]})")
    parts.append(f"per-event baseline {f['baseline_events_per_s']:,}{pct('baseline')}")
    ratios = [f"{f['ratio']}x the baseline"] if "ratio" in f else []
    if "vs_peer" in f:
        ratios.insert(0, f"{f['vs_peer']}x the peer")
    cpu = f"; CPU µs/event worker {f.get('batched_cpu_us_per_event', '?')}"
    if "batched_redis_cpu_us_per_event" in f:
        cpu += f" + Redis {f['batched_redis_cpu_us_per_event']}"
    if "peer_cpu_us_per_event" in f:
        cpu += f", peer {f['peer_cpu_us_per_event']}"
    cpu += f", limit {f.get('limit_cpu_us_per_event', '?')}"
    if "limit_redis_cpu_us_per_event" in f:
        cpu += f" + Redis {f['limit_redis_cpu_us_per_event']}"
    windows = " / ".join(f"{r:,}" for r in f.get("batched_window_events_per_s", []))
    return (
        f"{'; '.join(parts)} ev/s; worker = {', '.join(ratios)}{cpu} "
        f"(over {f['windows'] * f['events_per_window']:,} events; worker windows: {windows})"
    )


@scenario(
    "throughput",
    "events/s on one backlog: the limit, our batched worker, the Quix Streams peer and the "
    "per-event baseline",
    repeats=1,
)
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
    gen, total = throughput_workload(quick)
    windows = 1 if quick else 3
    baseline_window_s = 15.0
    setup_ops = [operation(e) for e in gen.setup_events()]
    events = list(gen.activity_events(total))  # kept: the peer's oracle is computed from them
    records = encode_all(events)
    env.produce(records)
    topics = sorted({topic_name(env.settings, t) for t, _, _ in records})
    figures: dict[str, Any] = {
        "events_per_window": total // windows,
        "windows": windows,
        "inner_runs": windows,
        "graph_setup_operations": len(setup_ops),
    }
    limits = [measure_limit(env, topics, total, new_namespace())]
    figures.update(_measure_worker(env, "batched", setup_ops, total, windows, None))
    if not quick:
        limits.append(measure_limit(env, topics, total, new_namespace()))
    if quick:
        # its start-up alone (a Quix app in its own virtualenv, exactly-once producers, state
        # and result topics) took 35 s of the smoke run on a loaded machine; its own test runs it
        figures["peer_unavailable"] = "not run in a quick run (its own test covers it)"
    else:
        figures.update(_measure_peer(env, topics, events, total))
    if not quick:
        limits.append(measure_limit(env, topics, total, new_namespace()))
    figures.update(
        _measure_worker(
            env, "baseline", setup_ops, total, windows, None if quick else baseline_window_s
        )
    )
    figures.update(median_of(limits))
    figures.update(comparisons(figures))
    return Result(
        summary=summarize,
        figures=figures,
        targets=[
            Target("batched_events_per_s", ">=", 20_000, " ev/s"),
            Target("batched_pct_of_limit", ">=", 60, " %"),
        ],
        ingest=INGEST,
        limit="limit_events_per_s",
        notes=[
            "one worker process, embedded broker and Redis on the same 2 cores; events: "
            "purchases 45 %, shares 35 %, reviews 15 %, refunds 3 %, consent 2 % over 10,000 "
            "users, 1,000 products (Zipf), 150 friends on average",
            "one run per worker (the graph seeding is too costly to repeat): `*_events_per_s` "
            "over the whole backlog, `*_window_events_per_s` per consecutive window (they vary "
            "with the event mix each window happens to hold)",
            "order on the one backlog: limit, worker, limit, peer, limit, baseline; "
            "`limit_events_per_s` is the median of the three limit passes, `*_pct_of_limit` "
            "each rate as a fraction of it; `vs_peer` and `ratio`: our worker's rate over the "
            "peer's and the per-event baseline's",
            "CPU per event: the process's CPU time (/proc; the limit's and the peer's own "
            "clocks) over the timed span, Redis's from INFO cpu over the same span (only on "
            "the bench's own redis-server); the broker's CPU is in nobody's figure (the peer "
            "writes changelogs and transactions to it, the others write Redis); RSS: peak "
            "(VmHWM)",
        ],
    )
