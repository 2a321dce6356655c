"""Where the stream worker's Redis time goes, per kind of event: the counter store's script
(``services/counters/*.lua``) profiled with ``INFO commandstats`` on a scratch redis-server.

Redis runs the one script single-threaded, so its CPU per event bounds the worker (one core of
this 2-core machine). This measures, for the ``throughput`` scenario's data (``tools.loadgen``,
seed 11: 10,000 users, 1,000 products, Zipf, 150 friends on average, the mix purchases 45 %,
shares 35 %, reviews 15 %, refunds 3 %, consent 2 %), what each kind costs:

1. a *template* namespace gets the graph (names, consent, 750,000 friendships) once per script
   variant, through the store, with the worker's fan-out threshold;
2. each run copies the template into a fresh namespace (``COPY``, server side), applies a
   warm-up of mixed activity, then a measured stretch of the mix as it comes, then the next
   events split by kind (purchases, then shares, reviews, refunds, consent), each kind measured
   alone: ``INFO commandstats`` (calls and µs of every command, the script's nested calls
   included) and ``INFO cpu`` (the server's whole CPU: parsing, replies, AOF) before and after;
3. runs alternate between the variants (ABBA...), so a noisy neighbour on the shared machine
   hits both alike; the figures are medians per variant and their ratio.

Events go through :meth:`CounterStore.apply_operations` as the worker sends them: 250 per call,
8 calls in flight. ``evalsha`` µs per event is the whole script (its nested calls included); the
nested commands' own µs are listed beside it, and what is left is Lua itself (decoding the JSON,
building keys, the interpreter).

Run: ``python -m bench.profile_redis`` (the current script), or against an older copy of the
.lua files: ``python -m bench.profile_redis --variant old=/tmp/old-lua --variant new=services/counters
--rounds 3``; ``--perf DIR`` also records the server with ``perf record`` during each run's mixed
stretch and prints where its main thread went (Lua's interpreter, ``redis.call`` plumbing,
allocation, the commands' own work). Results: bench/results/profile-worker-redis.md (33 µs of
Redis CPU per event for the mix, 10.4 nested calls; a quarter of it Lua's interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis as redis_sync
import redis.asyncio as aioredis

from bench.env import delete_namespace
from bench.measure import THROUGHPUT_MIX
from services.counters.settings import CountersSettings
from services.counters.store import CounterStore, operation, script_source
from socialproof.processes import free_port
from tools.devstack import redis_server, wait_for_redis
from tools.loadgen import LoadConfig, LoadGenerator

KINDS = {"P": "purchase", "S": "share", "V": "review", "R": "refund", "X": "consent"}
#: as the worker calls the store (services/counters/app.py APPLY_CHUNK, IN_FLIGHT)
PER_CALL, IN_FLIGHT = 250, 8
#: the scratch server's database holding the graph's template
TEMPLATE_DB = 15


def workload(warmup: int, mixed: int, per_kind_pool: int) -> tuple[list, list, list, list]:
    """Setup operations (graph), warm-up, measured mix, and the pool the per-kind runs draw from."""
    gen = LoadGenerator(
        LoadConfig(seed=11, users=10_000, products=1_000, mean_friends=150, mix=THROUGHPUT_MIX)
    )
    setup = [operation(e) for e in gen.setup_events()]
    activity = [operation(e) for e in gen.activity_events(warmup + mixed + per_kind_pool)]
    return setup, activity[:warmup], activity[warmup : warmup + mixed], activity[warmup + mixed :]


def commandstats(client: redis_sync.Redis) -> dict[str, tuple[int, int]]:
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in client.info("commandstats").items()
    }


def cpu_s(client: redis_sync.Redis) -> float:
    """CPU seconds of Redis' main thread (the one that runs scripts; not the AOF's fsync)."""
    info = client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


async def apply_all(store: CounterStore, ops: list[list]) -> None:
    pending: set[asyncio.Task] = set()
    for start in range(0, len(ops), PER_CALL):
        if len(pending) >= IN_FLIGHT:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(store.apply_operations(ops[start : start + PER_CALL])))
    for task in pending:
        await task


# --- perf: where the server's CPU goes, below the commands ---------------------------------------
# Debian's redis-server is stripped but exports most of its functions (for its crash reports), so
# perf names them; Lua's own internals are static and show as bare addresses inside the binary.
PERF_GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern))
    for label, pattern in (
        ("Lua interpreter (Lua's internals: addresses in redis-server)", r"^redis.* 0x"),
        ("Lua C API", r" (lua_|luaL_)"),
        (
            "number to text and back (Redis writes a Lua number as %.17g)",
            r"printf|hack_digit|__mpn_|strtod|fpconv|str_to_mpn|round_and_return|_IO_",
        ),
        ("AOF (each write appended to the AOF buffer)", r"AppendOnly|feedAppend|aof"),
        (
            "redis.call plumbing (argument objects, command lookup, call(), replies to Lua)",
            r" (scriptCall|call|freeLuaRedisArgv|createEmbeddedStringObject|createStringObject|"
            r"createObject|getDecodedObject|decrRefCount|incrRefCount|parseReply|redisProtocol|"
            r"lookupCommand|__strcasecmp|siphash_nocase|ACL|addReply|_addReply|ll2string|"
            r"ull2string|string2ll|sdsll2str|__vdso_gettimeofday|ustime|redisOpArray|propagate|"
            r"sdscatlen|_sdsMakeRoomFor|sdsnewlen|sdsfree|sdsempty|sdscmp|moduleNotify|"
            r"notifyKeyspace|signalModifiedKey|touchWatched|trackingInvalidate|stringObjectLen|"
            r"hdr_record|moduleCallCommandFilters|freeClientArgv|luaGetFromRegistry|ldbIsEnabled)",
        ),
        ("memory allocation (jemalloc)", r"jemalloc| (malloc|free|realloc|zmalloc|zfree|zrealloc)"),
        ("kernel (network, scheduling)", r"\[kernel"),
        ("the commands' own work (keyspace and data structures, memcmp/memmove)", r"."),
    )
)


def start_perf(pid: int, data: Path) -> subprocess.Popen:
    data.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["perf", "record", "-F", "2000", "-p", str(pid), "-o", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def perf_breakdown(data: Path) -> dict[str, float]:
    """% of the samples recorded in ``data`` per :data:`PERF_GROUPS` entry."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "--stdio"]
        + ["-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return breakdown_of(report)


def breakdown_of(report: str) -> dict[str, float]:
    """``perf report --sort dso,symbol --stdio`` lines summed per :data:`PERF_GROUPS` entry (the
    first matching pattern wins)."""
    shares = dict.fromkeys((label for label, _ in PERF_GROUPS), 0.0)
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
        if not match:
            continue
        described = f"{match[2]} {match[3]}"
        for label, pattern in PERF_GROUPS:
            if pattern.search(described):
                shares[label] += float(match[1])
                break
    return {label: round(pct, 1) for label, pct in shares.items()}


class Profiler:
    def __init__(self, url: str, scripts: dict[str, str], pid: int | None = None) -> None:
        self.url = url
        self.sync = redis_sync.Redis.from_url(url, decode_responses=True)
        self.tpl_url = urlunsplit(urlsplit(url)._replace(path=f"/{TEMPLATE_DB}"))
        self.tpl = redis_sync.Redis.from_url(self.tpl_url, decode_responses=True)
        # Each run copies ~800,000 keys: the AOF would grow past its rewrite threshold mid-run,
        # and a rewrite's fork makes the main thread take copy-on-write faults (measured: a
        # fifth of its samples). The AOF itself stays on, as in the bench and in production.
        self.sync.config_set("auto-aof-rewrite-percentage", 0)
        self.scripts = scripts
        #: the server's pid when this machine runs it (for ``--perf``)
        self.pid = pid
        self.template: tuple[str, list[str]] = ("", [])

    def store(self, client: aioredis.Redis, variant: str, ns: str) -> CounterStore:
        return CounterStore(
            client,
            ns,
            fanout_at=CountersSettings().worker_friends_fanout_at,
            coupon_secret="profile-secret",
            script=self.scripts[variant],
        )

    async def seed(self, setup: list[list]) -> None:
        """The graph, once into the template namespace, in a database of its own (TEMPLATE_DB:
        the measured runs' keyspace holds only their own keys, as the bench's does), kept on a
        server given by --redis-url so that later runs skip this. Seeded with the first
        variant's script: the variants compared must lay the graph's facts (names, consent,
        friendships, fan-out) out alike."""
        ns = "proftpl"
        if not self.tpl.exists(f"{ns}:seeded"):
            client = aioredis.Redis.from_url(self.tpl_url, decode_responses=True)
            store = self.store(client, next(iter(self.scripts)), ns)
            for start in range(0, len(setup), 5000):
                await store.apply_operations(setup[start : start + 5000])
            await client.aclose()
            self.tpl.set(f"{ns}:seeded", len(setup))
        self.template = (
            ns,
            [k for k in self.tpl.scan_iter(f"{ns}:*", count=5000) if k != f"{ns}:seeded"],
        )

    def copy(self, ns: str) -> None:
        tpl, keys = self.template
        db = self.sync.connection_pool.connection_kwargs.get("db", 0)
        pipe = self.tpl.pipeline(transaction=False)
        for i, key in enumerate(keys, 1):
            pipe.copy(key, ns + key[len(tpl) :], destination_db=db)
            if i % 5000 == 0:
                pipe.execute()
        pipe.execute()

    async def measure(
        self, store: CounterStore, ops: list[list], perf_data: Path | None = None
    ) -> dict:
        await self.quiet()
        recorder = start_perf(self.pid, perf_data) if perf_data and self.pid else None
        before, cpu0, t0 = commandstats(self.sync), cpu_s(self.sync), time.perf_counter()
        await apply_all(store, ops)
        seconds, cpu1, after = time.perf_counter() - t0, cpu_s(self.sync), commandstats(self.sync)
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(60)
        delta = {}
        for name, (calls, usec) in after.items():
            c0, u0 = before.get(name, (0, 0))
            if calls - c0 and name not in ("info", "script|load", "evalsha_ro"):
                delta[name] = (calls - c0, usec - u0)
        return {"events": len(ops), "cpu_s": cpu1 - cpu0, "seconds": seconds, "cmds": delta}

    async def quiet(self, timeout_s: float = 120.0) -> None:
        """Wait for a running AOF rewrite or save (a fork) to finish, and the lazy frees."""
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            info = self.sync.info("persistence")
            busy = info["aof_rewrite_in_progress"] or info["rdb_bgsave_in_progress"]
            if not busy and not self.sync.info("memory").get("lazyfree_pending_objects", 0):
                return
            await asyncio.sleep(0.1)

    async def run(
        self,
        variant: str,
        warmup: list,
        mixed: list,
        by_kind: dict,
        perf_data: Path | None = None,
    ) -> dict:
        ns = f"prof{variant}{time.monotonic_ns() % 10**9}"
        self.copy(ns)
        client = aioredis.Redis.from_url(self.url, decode_responses=True)
        store = self.store(client, variant, ns)
        try:
            await apply_all(store, warmup)
            out = {"mix": await self.measure(store, mixed, perf_data)}
            for kind, ops in by_kind.items():
                out[kind] = await self.measure(store, ops)
        finally:
            await client.aclose()
            delete_namespace(self.sync, ns)
        return out


def per_event(run: dict) -> dict:
    n = run["events"]
    nested = {k: v for k, v in run["cmds"].items() if k != "evalsha"}
    script_calls, script_us = run["cmds"].get("evalsha", (0, 0))
    nested_us = sum(u for _, u in nested.values())
    return {
        "calls": sum(c for c, _ in nested.values()) / n,
        "cpu_us": run["cpu_s"] * 1e6 / n,
        "script_calls": script_calls,
        # shares of the script's wall time (commandstats' µs are wall time: on a busy machine
        # a preempted Redis inflates them, all alike, so only their shares are compared)
        "lua_pct": 100 * (script_us - nested_us) / max(1, script_us),
        "top": sorted(
            ((name, c / n, 100 * u / max(1, script_us)) for name, (c, u) in nested.items()),
            key=lambda t: -t[2],
        ),
    }


def table(results: dict[str, list[dict]], shares: dict[str, float]) -> str:
    lines = [
        "| variant | kind | share of mix | Redis CPU µs/event | calls/event | Lua (not in a "
        "command) | top commands: calls/event, % of the script's time |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ["mix", *KINDS.values()]:
        for variant, runs in results.items():
            figures = [per_event(r[kind]) for r in runs if kind in r]
            if not figures:
                continue
            med = {k: statistics.median(f[k] for f in figures) for k in figures[0] if k != "top"}
            top = ", ".join(f"{n} {c:.2f}, {pct:.0f} %" for n, c, pct in figures[-1]["top"][:6])
            share = "100 %" if kind == "mix" else f"{shares.get(kind, 0) * 100:.1f} %"
            lines.append(
                f"| {variant} | {kind} | {share} | {med['cpu_us']:.1f} | {med['calls']:.2f} | "
                f"{med['lua_pct']:.0f} % | {top} |"
            )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    scripts = {}
    for spec in args.variant or ["current=services/counters"]:
        name, _, directory = spec.partition("=")
        scripts[name] = script_source(Path(directory))
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    if cache and cache.exists():
        setup, warmup, mixed, pool = orjson.loads(cache.read_bytes())
    else:
        setup, warmup, mixed, pool = workload(args.warmup, args.mixed, args.pool)
        if cache:
            cache.write_bytes(orjson.dumps([setup, warmup, mixed, pool]))
    by_kind = {
        name: [op for op in pool if op[0] == k][: args.per_kind] for k, name in KINDS.items()
    }
    shares = Counter(KINDS.get(op[0], op[0]) for op in warmup + mixed + pool)
    total = sum(shares.values())
    print(
        f"workload {time.perf_counter() - t0:.0f} s: setup {len(setup):,}, warm-up {len(warmup):,},"
        f" mix {len(mixed):,}, per kind {[len(v) for v in by_kind.values()]}",
        flush=True,
    )
    proc = None
    url = args.redis_url
    if url is None:
        port = free_port()
        proc = redis_server(port, Path(tempfile.mkdtemp(prefix="profile-redis-")), echo=False)
        proc.start()
        url = f"redis://127.0.0.1:{port}/0"
        wait_for_redis(url)
    try:
        prof = Profiler(url, scripts, proc.proc.pid if proc is not None and proc.proc else None)
        t0 = time.perf_counter()
        await prof.seed(setup)
        print(f"graph ready in {time.perf_counter() - t0:.0f} s", flush=True)
        results: dict[str, list[dict]] = {v: [] for v in scripts}
        order = list(scripts)
        for round_no in range(args.rounds):
            for variant in order if round_no % 2 == 0 else order[::-1]:
                perf_data = Path(args.perf) / f"{variant}-{round_no}.data" if args.perf else None
                results[variant].append(await prof.run(variant, warmup, mixed, by_kind, perf_data))
                if perf_data:
                    breakdown = perf_breakdown(perf_data)
                    print(
                        f"round {round_no} {variant}: where Redis' main thread went (perf, "
                        "the mixed stretch):",
                        flush=True,
                    )
                    for label, pct in breakdown.items():
                        print(f"  {pct:5.1f} %  {label}", flush=True)
                mix = per_event(results[variant][-1]["mix"])
                print(
                    f"round {round_no} {variant}: mix {mix['cpu_us']:.1f} Redis CPU µs/event,"
                    f" {mix['calls']:.2f} calls/event",
                    flush=True,
                )
        print(table(results, {k: v / total for k, v in shares.items()}))
    finally:
        if proc is not None:
            proc.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", help="NAME=DIR of the .lua files")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=30_000)
    parser.add_argument("--mixed", type=int, default=20_000)
    parser.add_argument("--pool", type=int, default=50_000, help="events split by kind")
    parser.add_argument("--per-kind", type=int, default=4_000)
    parser.add_argument("--cache", help="a file keeping the generated events between runs")
    parser.add_argument("--redis-url", help="an existing scratch Redis (default: start one)")
    parser.add_argument(
        "--perf",
        help="a folder: record the server with `perf record` during each run's mixed stretch "
        "and print where its time went (needs perf and a server started here)",
    )
    asyncio.run(main(parser.parse_args()))
