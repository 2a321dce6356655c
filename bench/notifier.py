"""Benchmark scenarios of the notifier (the storefront edge), registered with :mod:`bench.registry`.

- ``sse_fanout``: one notifier process holds 5,000 SSE connections (5 per product over 1,000
  products); its RSS is read from ``/proc``. Then 2,000 counter changes/s are made the way the
  stream processor makes them (write the serving store, announce the changed ids on the pub/sub
  channel, every 10 ms) and every client notes when each state arrives: the latency is from the
  write to the client having the new state. Products change round-robin, each every 500 ms, so
  the 4-updates/s pacing never holds a state back (pacing has its own tests): what is measured
  is the pipeline, not the deliberate delay.
- ``read_api``: ``GET /v1/proof/products/{id}`` with a viewer token (public counters plus
  ``friends_bought``) from 64 concurrent keep-alive connections, closed loop; latency percentiles
  as the client sees them, and the throughput that gives. ``read_api_2p``: the same with the
  notifier running 2 processes on its port (``SOCIALPROOF_NOTIFIER_PROCESSES=2``). The client is ``wrk`` (C; the Debian
  package ``make bench`` installs): a Python client burnt a whole core of the 2-core machine by
  itself, more than the server it measured. Any error or non-2xx answer fails the scenario.

The SSE scenarios use raw asyncio sockets as clients (an HTTP library would cost the 2-core
machine more CPU than the server under test). Run: ``python -m bench --only sse_fanout,read_api``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import redis as redis_sync

from bench.env import BenchEnv, new_namespace
from bench.registry import Result, Target, scenario
from contracts.views import Keys
from socialproof.processes import ManagedProcess, free_port, service_argv
from tools.devstack import wait_ready

TOKEN = "bench-service-token-0123456789"


@contextmanager
def notifier(env: BenchEnv, namespace: str, **extra: str) -> Iterator[tuple[str, int, int]]:
    """A real notifier process on a free port; yields (host, port, pid)."""
    port = free_port()
    proc = ManagedProcess(
        name="notifier",
        argv=service_argv("notifier"),
        env={
            "KAFKA_BOOTSTRAP_SERVERS": env.settings.kafka_bootstrap_servers,
            "REDIS_URL": env.settings.redis_url,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_SERVICE_TOKEN": TOKEN,
            "SOCIALPROOF_NOTIFIER_PORT": str(port),
            "SOCIALPROOF_LOG_LEVEL": "WARNING",
            # one client address makes all the load here: not what the rate limit is for
            "SOCIALPROOF_RATE_LIMIT_PER_S": "1000000000",
            "SOCIALPROOF_RATE_LIMIT_BURST": "1000000000",
            **extra,
        },
        echo=False,
        log_path=env.workdir / f"notifier-{port}.log",
    ).start()
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", 60, "the notifier", proc)
        assert proc.proc is not None
        yield "127.0.0.1", port, proc.proc.pid
    finally:
        proc.stop()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


# --- SSE fan-out ---------------------------------------------------------------------------------


class SseConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer


async def open_sse(host: str, port: int, path: str) -> SseConn:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"SSE answered {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return SseConn(reader, writer)


async def read_events(conn: SseConn, on_state) -> None:
    """Each event is one chunk (uvicorn sends one per message), so lines stay whole; chunk-size
    lines and comments (heartbeats) are skipped."""
    reader = conn.reader
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            on_state(orjson.loads(line[6:]), time.monotonic())


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
    seconds = 3 if quick else 10
    raise_fd_limit(connections * 2 + 1_000)  # the notifier inherits the limit too
    namespace = new_namespace()
    keys = Keys(namespace)
    ids = [f"bp{i}" for i in range(products)]
    with notifier(env, namespace, SOCIALPROOF_SSE_HEARTBEAT_S="15") as (host, port, pid):
        rss_idle = rss_mb(pid)
        figures = asyncio.run(_fanout(env, host, port, pid, keys, ids, connections, rate, seconds))
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
    rss_connected = rss_mb(pid)
    await asyncio.sleep(2)  # let the server settle after the ramp-up (its GC included)

    cpu_notifier_0, cpu_client_0, wall_0 = cpu_seconds(pid), _own_cpu(), time.monotonic()
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
            rss_peak = max(rss_peak, rss_mb(pid))
        await asyncio.sleep(0)  # let the readers run between ticks
    elapsed = time.monotonic() - started
    wall = time.monotonic() - wall_0
    notifier_cpu = (cpu_seconds(pid) - cpu_notifier_0) / wall
    client_cpu = (_own_cpu() - cpu_client_0) / wall
    # let the last states arrive, then count what never did
    final = {(n, ids[n % len(ids)]): counts[ids[n % len(ids)]] for n in range(len(conns))}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(delivered.get(k, -1) >= v for k, v in final.items()):
            break
        await asyncio.sleep(0.05)
    missed = sum(1 for k, v in final.items() if delivered.get(k, -1) < v)
    rss_peak = max(rss_peak, rss_mb(pid))
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


# --- read API ------------------------------------------------------------------------------------

#: wrk's script: the requests spread over the seeded products (formatted once, in ``init``:
#: the client's CPU is the server's on this machine); ``done`` prints one JSON line
WRK_SCRIPT = """
local requests, n = {}, 0
init = function(args)
  for i = 0, %(products)d - 1 do
    requests[i + 1] = wrk.format(nil, "/v1/proof/products/rp" .. i)
  end
end
request = function()
  n = n %% #requests + 1
  return requests[n]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"connect_errors":%%d,"read_errors":%%d,' ..
    '"write_errors":%%d,"timeouts":%%d,"non_2xx_3xx":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"p999_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""
READ_PRODUCTS = 100


@scenario("read_api", "GET /v1/proof/products/{id} with a viewer token, 64 concurrent clients")
def read_api(env: BenchEnv, quick: bool) -> Result:
    """The notifier as deployed (one process per pod)."""
    return _read_scenario(env, quick, processes=1)


@scenario("read_api_2p", "as read_api, the notifier with 2 processes on the port (SO_REUSEPORT)")
def read_api_2p(env: BenchEnv, quick: bool) -> Result:
    """``SOCIALPROOF_NOTIFIER_PROCESSES=2``: one Python process is one core at most."""
    return _read_scenario(env, quick, processes=2)


def _read_scenario(env: BenchEnv, quick: bool, processes: int) -> Result:
    concurrency = 8 if quick else 64
    seconds = 2 if quick else 10
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "the read_api scenarios need wrk (Debian package wrk; make bench installs it)"
        )
    script = env.workdir / "read_api.lua"
    script.write_text(WRK_SCRIPT % {"products": READ_PRODUCTS})
    namespace = new_namespace()
    _seed_reads(env, namespace)
    extra = {"SOCIALPROOF_NOTIFIER_PROCESSES": str(processes)}
    with notifier(env, namespace, **extra) as (host, port, pid):
        token = _viewer_token(port)
        _check_answer(port, token)
        url = f"http://{host}:{port}"
        # steady state: every process's cache filled by the same load first (not measured)
        _wrk(wrk, script, url, token, concurrency, 1 if quick else 2)
        cpu_0, wall_0 = tree_cpu_seconds(pid), time.monotonic()
        figures = _wrk(wrk, script, url, token, concurrency, seconds)
        wall = time.monotonic() - wall_0
        figures["notifier_cpu"] = round((tree_cpu_seconds(pid) - cpu_0) / wall, 2)
        alone = _wrk(wrk, script, url, token, 1, max(1, seconds // 3))
    figures["processes"] = processes
    figures["single_client_p50_ms"] = alone["p50_ms"]
    figures["single_client_p99_ms"] = alone["p99_ms"]
    figures["single_client_requests_per_s"] = alone["requests_per_s"]
    return Result(
        summary=lambda f: (
            f"{f['requests']} requests at concurrency {concurrency}, {processes} notifier "
            f"process{'es' if processes > 1 else ''}: "
            f"{f['requests_per_s']:.0f} req/s, p50 {f['p50_ms']} ms, p90 {f['p90_ms']} ms, "
            f"p99 {f['p99_ms']} ms (wrk, closed loop); notifier CPU {f['notifier_cpu']:.0%}; "
            f"one client alone: p50 {f['single_client_p50_ms']} ms, "
            f"p99 {f['single_client_p99_ms']} ms"
        ),
        figures=figures,
        targets=[Target("p99_ms", "<", 5, " ms")],
        notes=[
            "closed loop: latency = concurrency / throughput (Little's law), so at concurrency 64 "
            "a p99 under 5 ms needs well over 13,000 req/s",
            "load generator: wrk (C, one thread) on the same 2 cores as the notifier and Redis; "
            "requests spread over 100 products, all with the same viewer token; a 2 s run at "
            "the same concurrency fills the caches first (cold start is not measured)",
            "notifier CPU: all its processes, in cores",
        ],
    )


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (a notifier with several processes)."""
    total = cpu_seconds(pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(entry))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


def _seed_reads(env: BenchEnv, namespace: str) -> None:
    """100 products with 300 buyers each; a viewer with 500 friends, 150 of them consenting
    buyers of every product (the serving store's layout, written directly)."""
    keys = Keys(namespace)
    redis = redis_sync.Redis.from_url(env.settings.redis_url)
    now_ms = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    for p in range(READ_PRODUCTS):
        product = f"rp{p}"
        pipe.zadd(keys.buyers(product), {f"u{u}": now_ms - u * 1000 for u in range(300)})
        pipe.sadd(keys.consenting_buyers(product), *[f"u{u}" for u in range(0, 300, 2)])
    pipe.sadd(keys.friends("viewer"), *[f"u{u}" for u in range(0, 1000, 2)])
    for u in range(0, 300, 2):
        pipe.hset(keys.name(f"u{u}"), "n", f"Name{u}")
    pipe.execute()
    redis.close()


def _viewer_token(port: int) -> str:
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/viewer-tokens",
        json={"viewer_id": "viewer"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()["token"]


def _check_answer(port: int, token: str) -> None:
    """What the load asks for is the real answer: 200 with the viewer's friends (wrk only
    counts statuses)."""
    import httpx

    for _ in range(2):  # the first read fills the cache, the second is answered from it
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/proof/products/rp1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        if (
            response.status_code != 200
            or response.json().get("friends_bought", {}).get("count") != 150
        ):
            raise RuntimeError(
                f"unexpected read API answer: {response.status_code} {response.text}"
            )


def _wrk(wrk: str, script: Path, url: str, token: str, connections: int, seconds: int) -> dict:
    """One wrk run; its figures (latencies as wrk measured them, from send to full response)."""
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no figures: {done.stdout} {done.stderr}")
    raw = orjson.loads(lines[-1])
    errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx_3xx")
    )
    if errors:  # a fast wrong answer is no result
        raise RuntimeError(f"wrk saw errors or non-2xx/3xx answers: {raw}")
    return {
        "concurrency": connections,
        "requests": raw["requests"],
        "errors": errors,
        "non_2xx_3xx": raw["non_2xx_3xx"],
        "requests_per_s": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "p999_ms": round(raw["p999_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "cpus": os.cpu_count(),
    }
