"""Bench scenarios ``sse_fanout`` and ``sse_fanout_x5``: the notifier's SSE fan-out.

One notifier process holds 5,000 SSE connections (1 per product over 5,000 products; ``_x5``: 5
per product over 1,000); its RSS and CPU are read from ``/proc`` for the whole process tree
(granian's supervisor and its worker). Then 2,000 counter changes/s are made the way the stream
processor makes them (write the serving store, announce the changed ids on the pub/sub channel,
every 10 ms) and every client notes when each state arrives: the latency is from
the write to the client having the new state. Products change round-robin, each at most twice a
second, so the 4-updates/s pacing never holds a state back (pacing has its own tests): what is
measured is the pipeline, not the deliberate delay.

The clients are raw asyncio sockets (:func:`bench.measure.open_sse`). Run:
``python -m bench --only sse_fanout,sse_fanout_x5``.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import orjson
import redis as redis_sync

from bench.env import BenchEnv, new_namespace, notifier
from bench.measure import (
    SseConn,
    open_sse,
    own_cpu_seconds,
    percentile,
    raise_fd_limit,
    read_events,
    tree_cpu_seconds,
    tree_rss_mb,
)
from bench.registry import Result, Target, scenario
from contracts.views import Keys


@scenario("sse_fanout", "5,000 SSE connections: notifier RSS; change-to-client latency at 2,000/s")
def sse_fanout(env: BenchEnv, quick: bool) -> Result:
    """Each connection watches its own product: every change is delivered to one client."""
    return _fanout_scenario(env, quick, watchers_per_product=1)


@scenario("sse_fanout_x5", "as sse_fanout, but 5 connections watch each product (10,000 sends/s)")
def sse_fanout_x5(env: BenchEnv, quick: bool) -> Result:
    """The same load with every change delivered to five clients: a fan-out stress figure."""
    return _fanout_scenario(env, quick, watchers_per_product=5)


def _fanout_scenario(env: BenchEnv, quick: bool, watchers_per_product: int) -> Result:
    connections = 200 if quick else 5_000
    products = connections // watchers_per_product
    # each product changes at most twice a second, so pacing (4/s) never holds a state back
    rate = min(200 if quick else 2_000, products * 2)
    seconds = 1 if quick else 10
    # after the ramp-up, the server settles (its GC included) before the load
    settle_s = 0.5 if quick else 2.0
    raise_fd_limit(connections * 2 + 1_000)  # the notifier inherits the limit too
    namespace = new_namespace()
    keys = Keys(namespace)
    ids = [f"bp{i}" for i in range(products)]
    with notifier(env, namespace, SOCIALPROOF_SSE_HEARTBEAT_S="15") as (host, port, pid):
        rss_idle = tree_rss_mb(pid)
        figures = asyncio.run(
            _fanout(env, host, port, pid, keys, ids, connections, rate, seconds, settle_s)
        )
    figures["rss_idle_mb"] = round(rss_idle, 1)
    figures["watchers_per_product"] = watchers_per_product
    return Result(
        summary=lambda f: (
            f"{f['connections']} SSE connections ({watchers_per_product} per product): RSS "
            f"{f['rss_connected_mb']} MB (peak under load {f['rss_peak_mb']} MB); "
            f"{f['changes_per_s']:.0f} changes/s → {f['deliveries']} deliveries, "
            f"change→client p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, max "
            f"{f['max_ms']} ms; notifier CPU {f['notifier_cpu']:.0%}, bench client "
            f"CPU {f['client_cpu']:.0%}; {f['missed']} final states not delivered"
        ),
        figures=figures,
        targets=[
            Target("rss_connected_mb", "<", 500, " MB"),
            Target("rss_peak_mb", "<", 500, " MB"),
            Target("p99_ms", "<", 100, " ms"),
            Target("missed", "<", 1),
        ],
        notes=[
            "products change round-robin (each every products/rate s, never faster than the "
            "4/s pacing), so pacing never delays a state: the pipeline is what is measured",
            "the clients run in the bench process on the same 2 cores as the notifier and Redis",
        ],
    )


async def _fanout(
    env: BenchEnv,
    host: str,
    port: int,
    pid: int,
    keys: Keys,
    ids: list[str],
    connections: int,
    rate: int,
    seconds: int,
    settle_s: float,
) -> dict:
    redis = redis_sync.Redis.from_url(env.settings.redis_url)
    # change time of (product, count); a client that sees `count` for `product` got that change
    changed_at: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    delivered: dict[tuple[int, str], int] = {}  # (connection, product) -> latest count seen

    conns: list[SseConn] = []
    for start in range(0, connections, 250):  # in waves: the listen backlog is finite
        batch = await asyncio.gather(
            *(
                open_sse(host, port, f"/v1/proof/stream?products={ids[i % len(ids)]}")
                for i in range(start, min(start + 250, connections))
            )
        )
        conns.extend(batch)
    readers = []
    for n, conn in enumerate(conns):

        def on_state(state: dict, now: float, n: int = n) -> None:
            product, count = state["product_id"], state["bought"]["24h"]
            delivered[(n, product)] = count
            at = changed_at.get((product, count))
            if at is not None:
                latencies.append(now - at)

        readers.append(asyncio.create_task(read_events(conn, on_state)))
    # every connection has its initial state before the load starts
    deadline = time.monotonic() + 60
    while len(delivered) < connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    rss_connected = tree_rss_mb(pid)
    await asyncio.sleep(settle_s)  # let the server settle after the ramp-up (its GC included)

    cpu_notifier_0, cpu_client_0, wall_0 = (
        tree_cpu_seconds(pid),
        own_cpu_seconds(),
        time.monotonic(),
    )
    counts = dict.fromkeys(ids, 0)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    total = rate * seconds
    rss_peak = rss_connected
    started = time.monotonic()
    made = 0
    cursor = 0
    while made < total:
        target_time = started + (made // per_tick) * tick
        delay = target_time - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        batch = []
        pipe = redis.pipeline(transaction=False)
        now_ms = int(time.time() * 1000)
        for _ in range(min(per_tick, total - made)):
            product = ids[cursor % len(ids)]
            cursor += 1
            counts[product] += 1
            pipe.zadd(keys.buyers(product), {f"u{counts[product]}": now_ms})
            batch.append(product)
            made += 1
        at = time.monotonic()  # before the write: the latency is never under-counted
        pipe.execute()
        for product in batch:
            changed_at[(product, counts[product])] = at
        redis.publish(keys.changes_channel, orjson.dumps(batch))
        if made % (rate // 2 or 1) < per_tick:
            rss_peak = max(rss_peak, tree_rss_mb(pid))
        await asyncio.sleep(0)  # let the readers run between ticks
    elapsed = time.monotonic() - started
    wall = time.monotonic() - wall_0
    notifier_cpu = (tree_cpu_seconds(pid) - cpu_notifier_0) / wall
    client_cpu = (own_cpu_seconds() - cpu_client_0) / wall
    # let the last states arrive, then count what never did
    final = {(n, ids[n % len(ids)]): counts[ids[n % len(ids)]] for n in range(len(conns))}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(delivered.get(k, -1) >= v for k, v in final.items()):
            break
        await asyncio.sleep(0.05)
    missed = sum(1 for k, v in final.items() if delivered.get(k, -1) < v)
    rss_peak = max(rss_peak, tree_rss_mb(pid))
    for task in readers:
        task.cancel()
    for conn in conns:
        conn.writer.close()
    redis.close()
    ms = [x * 1000 for x in latencies]
    return {
        "connections": len(conns),
        "products": len(ids),
        "rss_connected_mb": round(rss_connected, 1),
        "rss_peak_mb": round(rss_peak, 1),
        "changes": made,
        "changes_per_s": round(made / elapsed, 1),
        "deliveries": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        "missed": missed,
        "notifier_cpu": round(notifier_cpu, 2),
        "client_cpu": round(client_cpu, 2),
    }
