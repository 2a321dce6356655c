"""Bench scenario ``cluster_scaling`` (#16 item 6): the counter store's throughput and Redis CPU
per event on one Redis node against a 3-master Redis Cluster, with 1 and 2 writers, and what a
master added to the cluster would add.

Three stores, each on servers of its own started by the scenario (so every node's CPU is its
own; on existing servers too, whose CPU would hold others' work):

- ``one1``: one redis-server, 1 shard: today's layout (``contracts.layout``, shards == 1);
- ``one12``: one redis-server, 12 product shards + the referrals shard: what sharding costs on
  one node (user facts written to all 13 shards, an order's lines split into per-shard calls);
- ``cluster12``: :class:`tools.rediscluster.RedisCluster` (3 masters + 3 replicas, AOF as
  above), 12 product shards (4 a master) + the referrals shard (on one of them). Masters and
  replicas are measured apart: a replica's CPU is what replicating the masters' writes costs.

Every store gets the same graph (names, consent, friendships of :mod:`tools.loadgen` seed 11,
the ``throughput`` scenario's mix and mean degree, 1,000 products, but :data:`USERS` users
instead of 10,000: the graph is written 13 times in the sharded stores, and at 10,000 users
those copies (``one12``, the cluster's masters, its replicas) would take ~12 GB) and then the same slices of its
activity (purchases 45 %, shares 35 %, reviews 15 %, refunds 3 %, consent 2 %). A *writer* is a
process of its own applying a slice through :class:`CounterStore.apply_operations` as the worker
does (chunks of 250 operations, 16 calls in flight; its client is
:func:`socialproof.redis.connect_store`, so the cluster client on the cluster). With 2 writers
the slice is split by each event's Kafka key (crc32 mod 2), as two workers would share the
partitions. The writers load their operations before the clock starts, then all start at once;
the clock stops when the last is done. Redis CPU is ``used_cpu_sys + used_cpu_user`` (INFO cpu:
every thread, AOF included) of every node, before and after; script calls are ``evalsha`` calls
(INFO commandstats). Runs alternate: each round runs every (store, writers) pair on the round's
slices (stores rotated each round, writer counts swapped), every store gets the same slice for
the same pair, and the figures are medians over the rounds.

The projection: a cluster saturates when its busiest master's core does, so the cluster's
ceiling is ``1 / (busiest master's CPU seconds per event)`` with the balance observed, and a
master's worth is that over the masters (more masters with 12 shards divide the same per-event
work finer: 4, 6 or 12 of them). It is a Redis-side bound: here every node and both writers share
the same 2 cores, so the measured events/s cannot grow; what bounds it past Redis is the writers'
CPU (per event, reported), the user facts replicated into every shard (consent changes and
friendships cost 13 script operations), the referrals shard (one slot, one master: every refund,
cancellation, link share and user fact), and replication (replica CPU per event).

Memory: ``used_memory`` of every node (minus its empty start) after the graph and after the
whole backlog; the graph's bytes per user in 1 and 13 shards are the runbook's replication cost.

``--per-call 250,3250`` (standalone) alternates the writers' operations per store call: 250 is
the worker's chunk; with 13 shards each such call becomes 13 script calls of ~20 operations.

Measured (bench/results/cluster-scaling.md: 11 alternating rounds, 3,000 users, load 3-11 from
other suites, so as ratios to ``one1`` in the same round, medians): Redis CPU per event ``one12``
1.12-1.15x, ``cluster12`` masters together 1.25-1.39x, the busiest master 0.49-0.53x (39-40 %
of the masters' work: the master with the referrals shard, in 39 of 44 runs), replicas
0.52-0.54x; so 3 masters give ~1.9-2.0x one Redis and a master ~0.63-0.68 of one: ~13,000-20,000
events/s a master against one Redis's 20,000-30,000. With 3250 ops per call (each shard's script
call ~250 again) the busiest master is 0.41-0.44x: 2.3-2.4x for 3 masters. Routed script
operations per event 1.358 (user facts x13); script calls per 1,000 events 4 vs 52 (4.8 at 3250
ops per call); writers' CPU 1.2-1.6 vs 10.7-13.3 µs/event (4.9-5.7 at 3250). The graph costs
29.9 KB per user per shard copy: 404.5 KB per user in 12 + 1 shards, and a master of 3 holds 4-5
copies.

Run: ``python -m bench --only cluster_scaling`` (results in the report), or
``python -m bench.cluster_scaling --users 3000 --rounds 3 [--per-call 250,3250]`` (prints the
figures; ``--json`` writes them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis as redis_sync

from bench.measure import THROUGHPUT_MIX
from bench.registry import Result, scenario

ROOT = Path(__file__).resolve().parent.parent

#: the graph's users (the throughput scenario has 10,000; see the module docstring)
USERS = 3_000
#: events per slice (one run of one store with 1 or 2 writers)
SLICE = 60_000
#: alternating rounds whose medians are reported
ROUNDS = 3
#: operations per store call and calls in flight, per writer (the worker: chunks of 250, two
#: 5,000-event batches in flight)
PER_CALL, IN_FLIGHT = 250, 16
SHARDS = 12
STORES = ("one1", "one12", "cluster12")
WRITERS = (1, 2)


@dataclass
class Node:
    role: str  # "one", "master" or "replica"
    port: int
    client: redis_sync.Redis
    empty_memory: int = 0


@dataclass
class Store:
    name: str
    url: str
    shards: int
    cluster: bool
    nodes: list[Node] = field(default_factory=list)
    namespace: str = ""

    @property
    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.role != "replica"]

    @property
    def replicas(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "replica"]


# --- the workload --------------------------------------------------------------------------------


def workload(users: int, products: int, friends: int, events: int) -> tuple[list, list]:
    """(graph operations, [(operation, Kafka key)] of the activity) of loadgen seed 11."""
    from contracts.topics import topic_for
    from services.counters.store import operation
    from tools.loadgen import LoadConfig, LoadGenerator

    gen = LoadGenerator(
        LoadConfig(
            seed=11, users=users, products=products, mean_friends=friends, mix=THROUGHPUT_MIX
        )
    )
    setup = [op for op in map(operation, gen.setup_events()) if op is not None]
    activity = []
    for event in gen.activity_events(events):
        op = operation(event)
        if op is not None:
            activity.append((op, topic_for(event).key_of(event)))
    return setup, activity


def split(ops: list[tuple[list, str]], writers: int) -> list[list[list]]:
    """A slice's operations per writer, by crc32 of the event's Kafka key (order kept)."""
    parts: list[list[list]] = [[] for _ in range(writers)]
    for op, key in ops:
        parts[zlib.crc32(key.encode()) % writers].append(op)
    return parts


# --- servers -------------------------------------------------------------------------------------


def _quiet_node(client: redis_sync.Redis) -> None:
    # each run appends to the AOF; a rewrite (a fork) in one store's run and not another's
    # would skew the comparison: the AOF stays on, its automatic rewrite off (own servers only)
    client.config_set("auto-aof-rewrite-percentage", 0)


@contextmanager
def servers(workdir: Path, quick: bool) -> Iterator[dict[str, Store]]:
    """The three stores' servers: two redis-servers and a 3+3 Redis Cluster, stopped after."""
    from socialproof.processes import free_port
    from tools.devstack import redis_server, wait_for_redis
    from tools.rediscluster import RedisCluster

    stores: dict[str, Store] = {}
    with ExitStack() as stack:
        for name, shards in (("one1", 1), ("one12", SHARDS)):
            port = free_port()
            proc = redis_server(
                port, workdir / name, echo=False, log_path=workdir / f"{name}.log"
            ).start()
            stack.callback(proc.stop)
            url = f"redis://127.0.0.1:{port}/0"
            wait_for_redis(url)
            client = redis_sync.Redis.from_url(url, decode_responses=True)
            stack.callback(client.close)
            stores[name] = Store(name, url, shards, False, [Node("one", port, client)])
        # Redis's default node timeout (15 s), not the tests' 2 s: a master busy with the
        # graph's seeding on a loaded machine must not be failed over mid-bench
        cluster = stack.enter_context(
            RedisCluster(workdir / "cluster", log_dir=workdir, node_timeout_ms=15_000)
        )
        store = Store("cluster12", cluster.url, SHARDS, True)
        for master in cluster.masters():
            for role, node in (
                ("master", master),
                *(("replica", r) for r in cluster.replicas_of(master)),
            ):
                client = redis_sync.Redis(port=node.port, decode_responses=True)
                stack.callback(client.close)
                store.nodes.append(Node(role, node.port, client))
        stores["cluster12"] = store
        for store in stores.values():
            for node in store.nodes:
                _quiet_node(node.client)
                node.empty_memory = int(node.client.info("memory")["used_memory"])
        yield stores


async def _seed(store: Store, setup: list[list]) -> None:
    from contracts.layout import layout_field
    from contracts.namespaces import pointer_key
    from services.counters.settings import CountersSettings
    from services.counters.store import CounterStore
    from socialproof.redis import connect_store
    from socialproof.settings import Settings

    redis = await connect_store(Settings(redis_url=store.url), socket_timeout=60)
    try:
        await redis.hset(pointer_key(store.namespace), layout_field(store.namespace), store.shards)
        counters = CounterStore(
            redis,
            store.namespace,
            fanout_at=CountersSettings().worker_friends_fanout_at,
            coupon_secret="bench-secret",
        )
        for start in range(0, len(setup), 5000):
            await counters.apply_operations(setup[start : start + 5000])
    finally:
        await redis.aclose()


def _wait_replicated(store: Store, timeout: float = 120.0) -> None:
    """Until every replica has its master's replication offset (so a run's replica CPU is its
    own run's)."""
    deadline = time.monotonic() + timeout
    for master in [n for n in store.nodes if n.role == "master"]:
        while time.monotonic() < deadline:
            info = master.client.info("replication")
            if info["role"] != "master":  # the per-node figures would be mislabelled
                raise RuntimeError(f"redis {master.port} was failed over during the bench")
            offset = int(info["master_repl_offset"])
            lagging = [
                v
                for k, v in info.items()
                if re.fullmatch(r"slave\d+", k) and int(v["offset"]) < offset
            ]
            if not lagging:
                break
            time.sleep(0.05)


# --- a writer ------------------------------------------------------------------------------------


async def _write(args: dict[str, Any]) -> None:
    """The writer process: load the operations, say ``ready``, wait for ``go`` on stdin, apply
    them as the worker would, print its figures."""
    from services.counters.settings import CountersSettings
    from services.counters.store import CounterStore
    from socialproof.redis import connect_store
    from socialproof.settings import Settings

    ops = orjson.loads(Path(args["ops"]).read_bytes())
    redis = await connect_store(Settings(redis_url=args["url"]), socket_timeout=60)
    store = CounterStore(
        redis,
        args["namespace"],
        fanout_at=CountersSettings().worker_friends_fanout_at,
        coupon_secret="bench-secret",
    )
    await store.layout()  # the recorded shard count, read before the clock
    if args["cluster"]:
        await redis.initialize()  # the slot map, before the clock
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, t0 = time.process_time(), time.monotonic()  # every thread's CPU, ns resolution
    pending: set[asyncio.Task] = set()
    per_call = args["per_call"]
    for start in range(0, len(ops), per_call):
        if len(pending) >= IN_FLIGHT:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(store.apply_operations(ops[start : start + per_call])))
    for task in pending:
        await task
    seconds, cpu = time.monotonic() - t0, time.process_time() - cpu0
    print(json.dumps({"events": len(ops), "seconds": seconds, "cpu_s": cpu}), flush=True)
    await redis.aclose()


def _node_counters(node: Node) -> tuple[float, int]:
    cpu = node.client.info("cpu")
    stats = node.client.info("commandstats")
    calls = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls


def measure_run(
    store: Store, parts: list[list[list]], workdir: Path, tag: str, per_call: int = PER_CALL
) -> dict[str, Any]:
    """One run: ``len(parts)`` writer processes apply their parts to ``store`` at once."""
    procs = []
    try:
        for i, part in enumerate(parts):
            path = workdir / f"ops-{tag}-{i}.json"
            path.write_bytes(orjson.dumps(part))
            args = {
                "url": store.url,
                "namespace": store.namespace,
                "ops": str(path),
                "cluster": store.cluster,
                "per_call": per_call,
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.cluster_scaling", "--writer", json.dumps(args)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a writer did not start (exit {proc.wait(30)}): {line!r}")
        _wait_replicated(store)
        load = os.getloadavg()[0]
        before = {n.port: _node_counters(n) for n in store.nodes}
        t0 = time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outs = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.strip():
                raise RuntimeError(f"a writer failed (exit {proc.wait(30)})")
            outs.append(json.loads(line))
        seconds = time.monotonic() - t0
        _wait_replicated(store)
        after = {n.port: _node_counters(n) for n in store.nodes}
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    events = sum(o["events"] for o in outs)
    us = {port: (after[port][0] - before[port][0]) * 1e6 / events for port in after}
    calls = sum(after[port][1] - before[port][1] for port in after)
    masters = [us[n.port] for n in store.masters]
    total = sum(masters)
    figures = {
        "events_per_s": round(events / seconds),
        "redis_us": round(total, 2),
        "busiest_us": round(max(masters), 2),
        "busiest_share_pct": round(100 * max(masters) / total, 1) if total else 0.0,
        "script_calls_per_1000_events": round(calls * 1000 / events, 1),
        "writer_us": round(sum(o["cpu_s"] for o in outs) * 1e6 / events, 2),
        "load": round(load, 2),
    }
    if store.replicas:
        figures["replica_us"] = round(sum(us[n.port] for n in store.replicas), 2)
        figures["master_us_each"] = [round(m, 2) for m in masters]
    return figures


def memory(store: Store) -> dict[str, Any]:
    """Bytes of ``used_memory`` above each node's empty start: masters (or the node) and
    replicas, summed."""
    out: dict[str, Any] = {"masters": 0, "replicas": 0, "each": []}
    for node in store.nodes:
        used = int(node.client.info("memory")["used_memory"]) - node.empty_memory
        out["replicas" if node.role == "replica" else "masters"] += used
        if node.role == "master":
            out["each"].append(used)
    return out


def shard_ops(store: Store, activity: list[tuple[list, str]]) -> float:
    """Script operations per event once routed to the store's shards (1 with one shard; user
    facts count once per shard, a split order once per shard it touches)."""
    from contracts.layout import StoreLayout
    from services.counters.store import route

    layout = StoreLayout("n", store.shards)
    ops = [op for op, _ in activity]
    routed = sum(len(each) for each in route(ops, layout).values())
    return round(routed / max(1, len(ops)), 3)


# --- the scenario --------------------------------------------------------------------------------


def measure(
    workdir: Path,
    quick: bool,
    users: int = USERS,
    rounds: int = ROUNDS,
    slice_events: int = SLICE,
    per_calls: tuple[int, ...] = (PER_CALL,),
) -> dict[str, Any]:
    """The figures (module docstring). ``per_calls``: operations per store call of the writers;
    the first is the scenario's, the others are measured too, on slices of their own, under
    the store name + ``_c<n>`` (e.g. ``one12_c3250_w1_redis_us``)."""
    from bench.env import new_namespace

    if quick:
        users, products, friends, rounds, slice_events = 200, 50, 10, 1, 1_000
    else:
        products, friends = 1_000, 150
    started = time.monotonic()
    setup, activity = workload(
        users, products, friends, rounds * len(WRITERS) * len(per_calls) * slice_events
    )
    figures: dict[str, Any] = {
        "users": users,
        "products": products,
        "mean_friends": friends,
        "graph_operations": len(setup),
        "events_per_run": slice_events,
        "ops_per_store_call": per_calls[0],
        "rounds": rounds,
        "inner_runs": rounds,
        "load_before": round(os.getloadavg()[0], 2),
    }
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (store[_c<n>], writers)
    with servers(workdir, quick) as stores:
        for store in stores.values():
            store.namespace = new_namespace()
            t0 = time.monotonic()
            asyncio.run(_seed(store, setup))
            _wait_replicated(store)
            figures[f"{store.name}_seed_s"] = round(time.monotonic() - t0, 1)
            graph = memory(store)
            figures[f"{store.name}_graph_bytes"] = graph["masters"]
            if store.replicas:
                figures[f"{store.name}_graph_replica_bytes"] = graph["replicas"]
                figures[f"{store.name}_graph_bytes_each"] = graph["each"]
            figures[f"{store.name}_shard_ops_per_event"] = shard_ops(store, activity)
        order = list(stores.values())
        k = 0
        for r in range(rounds):
            writer_order = WRITERS if r % 2 == 0 else tuple(reversed(WRITERS))
            calls_order = per_calls if r % 2 == 0 else tuple(reversed(per_calls))
            for writers in writer_order:
                for per_call in calls_order:
                    part = activity[k * slice_events : (k + 1) * slice_events]
                    k += 1
                    parts = split(part, writers)
                    for i in range(len(order)):
                        store = order[(i + r) % len(order)]
                        name = store.name
                        if per_call != per_calls[0]:
                            name += f"_c{per_call}"
                        got = measure_run(store, parts, workdir, f"{name}-{r}-{writers}", per_call)
                        runs.setdefault((name, writers), []).append(got)
                        print(f"[cluster_scaling] round {r} {name} w{writers}: {got}", flush=True)
        for store in stores.values():
            used = memory(store)
            figures[f"{store.name}_backlog_bytes"] = used["masters"]
            if store.replicas:
                figures[f"{store.name}_backlog_replica_bytes"] = used["replicas"]
                figures[f"{store.name}_backlog_bytes_each"] = used["each"]
    for (name, writers), each in runs.items():
        for key in each[0]:
            tag = f"{name}_w{writers}_{key}"
            if key == "master_us_each":  # per master, the median of each
                figures[tag] = [
                    round(statistics.median(run[key][m] for run in each), 2)
                    for m in range(len(each[0][key]))
                ]
            else:
                figures[tag] = round(statistics.median(run[key] for run in each), 2)
        figures[f"{name}_w{writers}_events_per_s_each"] = [run["events_per_s"] for run in each]
    figures.update(projection(figures))
    figures["load_after"] = round(os.getloadavg()[0], 2)
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def projection(f: dict[str, Any], masters: int = 3) -> dict[str, Any]:
    """Redis-bound ceilings (events/s when the busiest node's core is full) and memory per
    user, from the medians in ``f``. Every variant (``_c<n>``: another ops-per-call) is set
    against today's store: ``one1`` at the scenario's own ops per call."""
    out: dict[str, Any] = {}
    suffixes = sorted(
        {k.split("_w")[0].removeprefix("cluster12") for k in f if k.startswith("cluster12")} - {""},
    )
    for w in WRITERS:
        one = f.get(f"one1_w{w}_busiest_us")
        for sfx in ("", *(x for x in suffixes if x.startswith("_c"))):
            busiest = f.get(f"cluster12{sfx}_w{w}_busiest_us")
            if not (one and busiest):
                continue
            for name in (f"one1{sfx}", f"one12{sfx}"):
                out[f"{name}_w{w}_ceiling_events_per_s"] = round(1e6 / f[f"{name}_w{w}_busiest_us"])
                out[f"{name}_w{w}_cost_vs_one1"] = round(f[f"{name}_w{w}_redis_us"] / one, 2)
            c = f"cluster12{sfx}_w{w}"
            out[f"{c}_ceiling_events_per_s"] = round(1e6 / busiest)
            out[f"{c}_events_per_s_per_master"] = round(1e6 / busiest / masters)
            out[f"{c}_ceiling_vs_one1"] = round(one / busiest, 2)
            out[f"{c}_cost_vs_one1"] = round(f[f"{c}_redis_us"] / one, 2)
    users = f["users"]
    one, sharded = f.get("one1_graph_bytes"), f.get("one12_graph_bytes")
    if one and sharded:
        out["graph_bytes_per_user_1_shard"] = round(one / users)
        out["graph_bytes_per_user_13_shards"] = round(sharded / users)
        out["graph_bytes_per_user_per_extra_shard"] = round((sharded - one) / users / SHARDS)
    return out


def summarize(f: dict[str, Any]) -> str:
    def run(name: str, w: int) -> str:
        return (
            f"{name} w{w} {f[f'{name}_w{w}_events_per_s']:,} ev/s, Redis "
            f"{f[f'{name}_w{w}_redis_us']} µs/ev"
        )

    parts = [run(name, w) for w in WRITERS for name in STORES]
    return (
        "; ".join(parts) + f"; cluster busiest master {f['cluster12_w2_busiest_us']} µs/ev "
        f"({f['cluster12_w2_busiest_share_pct']} %), replicas {f['cluster12_w2_replica_us']} "
        f"µs/ev; projected {f['cluster12_w2_events_per_s_per_master']:,} ev/s per master, "
        f"ceiling {f['cluster12_w2_ceiling_events_per_s']:,} at 3 vs "
        f"{f['one1_w2_ceiling_events_per_s']:,} on one node; graph "
        f"{f['graph_bytes_per_user_1_shard']:,} B/user in 1 shard, "
        f"{f['graph_bytes_per_user_13_shards']:,} in 13 (medians of {f['rounds']} rounds)"
    )


@scenario(
    "cluster_scaling",
    "Redis CPU per event and events/s on one Redis (1 and 12 shards) vs a 3-master Redis "
    "Cluster, 1 and 2 writers; projected events/s per added master",
    repeats=1,
)
def cluster_scaling(env: Any, quick: bool) -> Result:
    figures = measure(env.workdir, quick)
    return Result(
        summary=summarize,
        figures=figures,
        notes=[
            "stores: one1 = one redis-server, 1 shard (today); one12 = one redis-server, 12 "
            "product shards + referrals shard; cluster12 = 3 masters + 3 replicas, 12 + 1 "
            "shards; all started by the scenario, AOF everysec, automatic AOF rewrite off",
            "`*_w{1,2}_*`: 1 or 2 writer processes (CounterStore.apply_operations, 250 ops a "
            "call, 16 in flight each); medians over the rounds; every store gets the same "
            "slices",
            "`redis_us`: CPU µs per event of the node or all masters (INFO cpu, all threads); "
            "`busiest_us` the busiest master's; `replica_us` all replicas'; `writer_us` the "
            "writers' own CPU; `script_calls_per_1000_events`: evalsha calls; `*_shard_ops_per_event`: script operations per event once routed",
            "`*_ceiling_events_per_s` = 1e6 / busiest_us: where the busiest node's core is "
            "full; `cluster12_*_events_per_s_per_master` = that / 3 masters. A Redis-side "
            "bound: everything here shares 2 cores, so measured events/s cannot show it",
            "`*_graph_bytes`: used_memory above the empty node after the graph (names, consent, "
            "friendships); `*_backlog_bytes` after every slice too",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_scaling", description=__doc__)
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--events", type=int, default=SLICE, help="events per run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--per-call",
        default=str(PER_CALL),
        help="operations per store call of a writer; several (250,3250) are alternated",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.writer:
        asyncio.run(_write(json.loads(args.writer)))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cluster-scaling-") as tmp:
        figures = measure(
            Path(tmp),
            args.quick,
            args.users,
            args.rounds,
            args.events,
            tuple(int(n) for n in args.per_call.split(",")),
        )
    print(json.dumps(figures, indent=1))
    print(summarize(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
