"""Bench scenarios ``read_api`` and ``read_api_2p``: the notifier's read API.

``GET /v1/proof/products/{id}`` with a viewer token (public counters plus ``friends_bought``) from
64 concurrent keep-alive connections, closed loop; latency percentiles as the client sees them,
and the throughput that gives. ``read_api_2p``: the same with the notifier running 2 worker
processes on its port (``SOCIALPROOF_NOTIFIER_PROCESSES=2``). The notifier is served as deployed
(``socialproof serve notifier``: granian, one worker process under granian's supervising process;
see :mod:`socialproof.serve`). The client is ``wrk`` (C; the Debian package ``make bench``
installs): a Python client burnt a whole core of the 2-core machine by itself, more than the
server it measured. Any error or non-2xx answer fails the scenario.
Run: ``python -m bench --only read_api,read_api_2p``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import orjson
import redis as redis_sync

from bench.env import TOKEN, BenchEnv, new_namespace, notifier
from bench.measure import tree_cpu_seconds
from bench.registry import Result, Target, scenario
from contracts.views import Keys

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


@scenario("read_api_2p", "as read_api, the notifier with 2 worker processes on the port")
def read_api_2p(env: BenchEnv, quick: bool) -> Result:
    """``SOCIALPROOF_NOTIFIER_PROCESSES=2``: one Python process is one core at most."""
    return _read_scenario(env, quick, processes=2)


def _read_scenario(env: BenchEnv, quick: bool, processes: int) -> Result:
    concurrency = 8 if quick else 64
    seconds = 1 if quick else 10
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
            "notifier CPU: all its processes, in cores (granian's HTTP runs on a thread of its "
            "own beside the Python one)",
        ],
    )


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
