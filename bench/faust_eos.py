"""Bench scenario ``faust_eos``: Faust's exactly-once with changelog-backed tables against the
worker's idempotent Redis sink, on the same events.

The two designs (each a process of its own, so that it can be SIGKILLed):

- **worker**: the real ``socialproof worker`` (batched consumer, idempotent Lua scripts in Redis,
  at-least-once commits after the writes);
- **faust**: :mod:`bench.faust_eos_app`, ``processing_guarantee='exactly_once'``, purchases per
  product in an in-memory table rebuilt from its changelog at start, behind a dedupe table and a
  repartition topic (what a per-product Faust table needs, orders being keyed by order id).

The workload: purchases from :mod:`tools.loadgen` (Zipf products, 1-2 lines each) with a
tenth of them sent twice, at random later positions (a producer's retry, a replayed topic). The
count compared is the same in both designs: for each product, how many distinct orders contain
it. The oracle computes it from the event list; the worker's is read from Redis
(``ub:{product}|{user}`` holds one field per order), Faust's from its table, both as the process
serves it and as its changelog holds it (read committed, to the end: what a restart recovers).

Figures, for each design:

- **throughput**: a backlog produced first; a fresh process (new group, empty state) per run;
  events/s applied from its first event applied to the last (the worker: the whole backlog,
  counted in ``/metrics`` once a batch is in Redis) or to ``window_s`` later (Faust: additions to
  its table, converted to events; it would need minutes for a backlog the worker takes more
  than a few polls over). Repeated, medians.
- **correctness after SIGKILLs**: the events produced live into topics of the design's own,
  cycling through them (re-sent events are more duplicates) until each was sent once and the
  process was SIGKILLed ``kills`` times, each once it had applied ``kill_after`` since it
  started, and restarted at once; once every event is committed (the group's offsets at the end
  of the source, for Faust also nothing committed left in its repartition topic) the counts are
  compared with the oracle. A process that moves nothing for ``STALL_S`` meanwhile is restarted
  (and counted): measured, a restarted Faust app sometimes stops taking up some partitions, alive
  and "ready", with nothing in its log.
- **recovery**: from a restart to the first event applied by the new process (Faust: after its
  tables are rebuilt from the changelogs), median over the kills; beside it the part spent
  before the process held partitions (the killed member leaving the group: session timeout 6 s
  for both) and, for Faust, until its tables were ready.

What the Faust figures come from (faust-streaming 0.15.3, read in its code, seen in the runs):

- A record an agent sends joins the transaction of the *destination* partition's number
  (``TransactionManager.send``), the consumed offsets and table writes that of the *source*
  partition; ``commit()`` commits those transactions one after the other while the agents go on;
  and a stream acks a record only when the agent asks for the next one (``Stream._c_aiter``), so
  a table write can commit before the offset of the record that made it. A kill then splits what
  one event did: repartitioned records committed twice or never
  (``faust_orders_forwarded_twice`` / ``_never_forwarded``), or a table addition committed and
  its record replayed (more counted than forwarded). By that reading only a pipeline whose every
  write lands in its source record's partition, with no commit between a write and its ack,
  would be atomic (not measured here); a per-product count from orders keyed by order id is not
  one.
- Under ``exactly_once`` table recovery ends only after two 5-second waits for a changelog
  record that never comes (a changelog's last offset is a transaction marker, not a record:
  ``tables/recovery.py``, "Aborted tx until highwater"), so every restart with a non-empty
  changelog spends 10 s or more rebuilding tables, however small.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient

from bench.env import ROOT, Background, BenchEnv, encode_all, group_for, new_namespace
from bench.measure import committed_offsets, read_committed
from bench.registry import Result, Target, scenario
from contracts import events as ev
from contracts.topics import ORDERS
from ops.topics import true_end_offsets
from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader, to_json
from socialproof.kafka import ensure_topics, topic_name
from socialproof.processes import ManagedProcess, free_port
from socialproof.settings import Settings
from tools.loadgen import LoadConfig, LoadGenerator

#: both designs: the broker's minimum (group.min.session.timeout.ms), so a killed member leaves
#: its group within seconds
SESSION_TIMEOUT_MS = 6_000
POLL_S = 0.02
#: one design's whole kill run, and one throughput run, at most
RUN_DEADLINE_S = 180.0
#: nothing committed or applied for this long while events are left: stalled
STALL_S = 20.0
#: restarts of a stalled process before the run fails
MAX_STALL_RESTARTS = 2


@dataclass(frozen=True)
class Sizes:
    orders: int  # distinct purchase events of the kill runs
    throughput_orders: int  # distinct purchase events of the throughput backlog
    duplicate_share: float
    users: int
    products: int
    throughput_repeats: int
    #: Faust's throughput is taken over this long (it would need minutes for the backlog the
    #: worker needs to be timed over more than a few polls)
    window_s: float
    kills: int
    live_rate: float  # events/s produced during the kill runs
    #: a process is killed once it has applied this many since it started (it is working)
    kill_after: int


FULL = Sizes(orders=1_000, throughput_orders=30_000, duplicate_share=0.1, users=2_000,
             products=200, throughput_repeats=3, window_s=6.0, kills=3, live_rate=50.0,
             kill_after=100)
QUICK = Sizes(orders=300, throughput_orders=3_000, duplicate_share=0.1, users=200, products=40,
              throughput_repeats=1, window_s=3.0, kills=1, live_rate=50.0, kill_after=50)


# --- the workload and its oracle -----------------------------------------------------------------


def workload(sizes: Sizes, orders: int, seed: int = 21) -> list[ev.Event]:
    """``orders`` purchases, a ``duplicate_share`` of them sent again at a random later
    position."""
    gen = LoadGenerator(LoadConfig(seed=seed, users=sizes.users, products=sizes.products,
                                   mix={"purchase": 1.0}))
    events = list(gen.activity_events(orders))
    rng = random.Random(seed)
    for original in rng.sample(range(len(events)), int(len(events) * sizes.duplicate_share)):
        events.insert(rng.randrange(original + 1, len(events) + 1), events[original])
    return events


def purchases_per_product(events: list[ev.Event]) -> dict[str, int]:
    """The oracle: distinct orders containing each product (a duplicate counts once)."""
    orders: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event, ev.PurchaseCompleted):
            orders[event.payload.order_id] = {line.product_id for line in event.payload.lines}
    counts: dict[str, int] = defaultdict(int)
    for products in orders.values():
        for product in products:
            counts[product] += 1
    return dict(counts)


def compare(got: dict[str, int], want: dict[str, int]) -> dict[str, int]:
    wrong = [p for p in set(got) | set(want) if got.get(p, 0) != want.get(p, 0)]
    return {
        "products_wrong": len(wrong),
        "count_sum": sum(got.values()),
        "over": sum(max(0, got.get(p, 0) - want.get(p, 0)) for p in wrong),
        "under": sum(max(0, want.get(p, 0) - got.get(p, 0)) for p in wrong),
    }


# --- the two designs ------------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One process of a design, from its start to its kill."""

    proc: ManagedProcess
    url: str
    started: float
    assigned_at: float | None = None  # holds partitions
    ready_at: float | None = None  # and its state is ready (Faust: tables recovered)
    first_applied_at: float | None = None


@dataclass
class Design:
    """What the measurements need of a design: start a process (same state identity every time:
    group, namespace or app id), its progress, whether everything is committed, its counts."""

    env: BenchEnv
    settings: Settings  # whose topic prefix the design reads
    label: str
    admin: AdminClient = field(init=False)
    current: Incarnation | None = None
    source_ends: dict[int, int] | None = None

    def __post_init__(self) -> None:
        self.admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap_servers})

    @property
    def source(self) -> str:
        return topic_name(self.settings, ORDERS)

    def argv_env(self, port: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def progress(self, inc: Incarnation) -> tuple[bool, bool, int, int]:
        """(holds partitions, ready to process, records taken up since it started, applied
        since it started)."""
        raise NotImplementedError

    @property
    def group(self) -> str:
        raise NotImplementedError

    def start(self) -> Incarnation:
        port = free_port()
        argv, extra = self.argv_env(port)
        proc = ManagedProcess(
            name=self.label, argv=argv, env=extra, cwd=str(ROOT), echo=False,
            log_path=self.env.workdir / f"{self.label}-{self.group}.log",
        )
        started = time.monotonic()
        proc.start()
        self.current = Incarnation(proc, f"http://127.0.0.1:{port}", started)
        return self.current

    def poll(self) -> tuple[bool, int, int]:
        """(ready, taken up, applied) of the current process (zeros while its web server is not
        up yet); notes when it first held partitions, was ready and applied an event."""
        inc = self.current
        assert inc is not None
        inc.proc.ensure_alive()
        try:
            assigned, ready, taken, applied = self.progress(inc)
        except (httpx.HTTPError, ValueError):  # not up yet (no answer, or not its page yet)
            return False, 0, 0
        now = time.monotonic()
        ready = ready or applied > 0
        if (assigned or ready) and inc.assigned_at is None:
            inc.assigned_at = now
        if ready and inc.ready_at is None:
            inc.ready_at = now
        if applied and inc.first_applied_at is None:
            inc.first_applied_at = now
        return ready, taken, applied

    def kill(self) -> None:
        if self.current is not None:
            self.current.proc.kill()
            self.current.proc.stop(timeout=1)  # reaps it and its output thread

    def committed_to_end(self) -> bool:
        if self.source_ends is None:
            raise RuntimeError("the source's end is known only once everything is produced")
        got = committed_offsets(self.admin, self.group)
        return all(got.get((self.source, p), 0) >= end for p, end in self.source_ends.items())

    def done(self) -> bool:
        return self.committed_to_end()

    def describe(self) -> str:
        """Where it stands (for an error): committed offsets against the source's end, its
        progress and its last output."""
        got = committed_offsets(self.admin, self.group)
        inc = self.current
        return (
            f"source ends {self.source_ends}, committed "
            f"{ {f'{t}/{p}': o for (t, p), o in sorted(got.items())} }, progress "
            f"{self.poll() if inc else None}; its last output:\n"
            + (inc.proc.tail(15) if inc else "")
        )

    def counts(self) -> dict[str, dict[str, int]]:
        raise NotImplementedError


class WorkerDesign(Design):
    def __init__(self, env: BenchEnv, settings: Settings, label: str = "worker") -> None:
        super().__init__(env, settings, label)
        self.namespace = new_namespace()

    @property
    def group(self) -> str:
        return group_for(self.namespace)

    def argv_env(self, port: int) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "cli", "worker"], {
            **self.env.process_env(self.namespace),
            "SOCIALPROOF_KAFKA_TOPIC_PREFIX": self.settings.kafka_topic_prefix,
            "SOCIALPROOF_WORKER_WEB_PORT": str(port),
            "SOCIALPROOF_LOG_LEVEL": "WARNING",
            "SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "SOCIALPROOF_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        }

    def progress(self, inc: Incarnation) -> tuple[bool, bool, int, int]:
        assigned = inc.assigned_at is not None
        if not assigned:  # /readyz also pings Kafka and Redis: only until the first assignment
            body = self.env.http.get(f"{inc.url}/readyz").json()
            assigned = body.get("assigned_partitions", 0) > 0
        processed = _processed(self.env.http.get(f"{inc.url}/metrics").text)
        return assigned, assigned, processed, processed  # no state of its own to load

    def counts(self) -> dict[str, dict[str, int]]:
        return {"redis": asyncio.run(_redis_purchases(self.env.settings.redis_url,
                                                      self.namespace))}


class FaustDesign(Design):
    def __init__(self, env: BenchEnv, settings: Settings, label: str = "faust") -> None:
        super().__init__(env, settings, label)
        # the app id is its consumer group and starts its topics' names: under the run's prefix
        self.app_id = f"{env.settings.kafka_topic_prefix}faust-{uuid.uuid4().hex[:8]}"

    @property
    def group(self) -> str:
        return self.app_id

    @property
    def repartition(self) -> str:
        return f"{self.app_id}-by-product"

    def argv_env(self, port: int) -> tuple[list[str], dict[str, str]]:
        argv = [
            sys.executable, "-m", "bench.faust_eos_app",
            "--bootstrap", self.settings.kafka_bootstrap_servers,
            "--app-id", self.app_id,
            "--source", self.source,
            "--web-port", str(port),
            "--datadir", str(self.env.workdir / self.app_id),
            "--session-timeout-s", str(SESSION_TIMEOUT_MS / 1000),
        ]
        return argv, {}

    def progress(self, inc: Incarnation) -> tuple[bool, bool, int, int]:
        body = self.env.http.get(f"{inc.url}/state").json()
        assigned = body["assigned"] > 0
        return assigned, assigned and body["recovered"], body["consumed"], body["applied"]

    def done(self) -> bool:
        """Every source record committed, and no committed record of the repartition topic
        after the group's committed offsets (read committed, to the end)."""
        if not self.committed_to_end():
            return False
        got = committed_offsets(self.admin, self.group)
        start = {p: o for (t, p), o in got.items() if t == self.repartition}
        return not read_committed(self.settings.kafka_bootstrap_servers, self.repartition,
                                  ORDERS.partitions, start)

    def counts(self) -> dict[str, dict[str, int]]:
        served = {str(k): int(v) for k, v in
                  self.env.http.get(f"{self.current.url}/table").json().items()}
        changelog: dict[str, int] = {}
        for key, value in read_committed(self.settings.kafka_bootstrap_servers,
                                         f"{self.app_id}-purchases-changelog", ORDERS.partitions):
            if key is None:
                continue
            product = orjson.loads(key)
            if value is None:
                changelog.pop(product, None)
            else:
                changelog[product] = int(orjson.loads(value))
        return {"served": served, "changelog": changelog}

    def forwarded(self) -> dict[tuple[str, str], int]:
        """How many times each (order, product) was committed to the repartition topic."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for key, value in read_committed(self.settings.kafka_bootstrap_servers,
                                         self.repartition, ORDERS.partitions):
            counts[(orjson.loads(value), orjson.loads(key))] += 1
        return dict(counts)

    def forget_group(self) -> None:
        """On servers shared with others: the app's consumer group goes too (its topics are
        under the run's prefix, which the environment deletes)."""
        try:
            futures = self.admin.delete_consumer_groups([self.group], request_timeout=10)
            for fut in futures.values():
                fut.result()
        except Exception as exc:  # best effort, as for the environment's own groups
            print(f"[bench] consumer group {self.group} not deleted: {exc}", file=sys.stderr)


def _processed(metrics: str) -> int:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("socialproof_events_processed_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def _redis_purchases(redis_url: str, namespace: str) -> dict[str, int]:
    """Distinct orders per product as the worker stored them: ``ub:{product}|{user}`` holds one
    field per kept order of that user and product."""
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{namespace}:ub:*", count=1000)]
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hlen(key)
            lengths = await pipe.execute()
        counts: dict[str, int] = defaultdict(int)
        for key, n in zip(keys, lengths, strict=True):
            counts[key.split(":ub:", 1)[1].split("|", 1)[0]] += n
        return dict(counts)
    finally:
        await redis.aclose()


async def _views_wrong(redis_url: str, namespace: str, events: list[ev.Event]) -> int:
    """Products whose served proof (bought windows, reviews, shares) differs from the processor's
    oracle: the worker keeps more than the count compared here, all of it checked."""
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        oracle = Oracle(events)
        products = sorted(purchases_per_product(events))
        now_ms = int(time.time() * 1000)
        proofs = await ProofReader(redis, namespace).read_many(products, now_ms=now_ms)
        wrong = 0
        for product, proof in zip(products, proofs, strict=True):
            got = to_json(proof)
            got.pop("as_of", None)
            wrong += got != oracle.proof(product, now_ms)
        return wrong
    finally:
        await redis.aclose()


# --- the measurements ------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = POLL_S
             ) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def throughput(design: Design, target: int, records_per_applied: float, window_s: float
               ) -> float:
    """Events/s applied from a backlog already produced, by a fresh process: from its first
    event applied (once its pipeline delivers: Faust's repartitioned records become readable
    when their transaction commits) to ``target`` applied (everything) or, at the latest,
    ``window_s`` later. ``records_per_applied``: events per unit of the design's applied count
    (Faust counts table additions, about 1.1 per event here). A backlog done at the first
    poll that sees anything applied (the worker takes up to 5,000 events a batch) is timed
    from the last poll before it took anything up."""
    design.start()
    idle = time.monotonic()  # the last poll at which it had taken nothing up
    deadline = idle + RUN_DEADLINE_S
    try:
        first: tuple[float, int] | None = None
        while True:
            _, taken, applied = design.poll()
            now = time.monotonic()
            if first is None and applied > 0:
                first = (now, applied) if applied < target else (idle, 0)
            if first is not None and (applied >= target or now >= first[0] + window_s):
                return (applied - first[1]) * records_per_applied / (now - first[0])
            if taken == 0:
                idle = now
            if now > deadline:
                raise RuntimeError(f"{design.label}: {applied} of {target} applied in "
                                   f"{RUN_DEADLINE_S:.0f}s")
            time.sleep(POLL_S)
    finally:
        design.kill()


def settle(design: Design, deadline: float) -> bool:
    """Until everything is committed (True), or nothing has moved (the group's committed
    offsets, the process's applied count) for ``STALL_S`` (False); an error at ``deadline``."""
    last: tuple[int, int] | None = None
    moved = time.monotonic()
    while True:
        _, _, applied = design.poll()
        if design.done():
            return True
        now = time.monotonic()
        state = (sum(committed_offsets(design.admin, design.group).values()), applied)
        if state != last:
            last, moved = state, now
        elif now - moved > STALL_S:
            return False
        if now > deadline:
            raise RuntimeError(f"{design.label}: not everything committed in time; "
                               f"{design.describe()}")
        time.sleep(0.2)


def kill_run(design: Design, records: list, sizes: Sizes) -> dict[str, Any]:
    """Produce ``records`` live at ``sizes.live_rate`` while the design works, from its first
    record again when through (a re-sent event is a duplicate: the counts must not change), until
    every record was sent once and the design was SIGKILLed ``sizes.kills`` times, each once its
    process had applied ``sizes.kill_after`` (it is working, not starting) and restarted at once
    (so new events are always coming); then wait until everything is committed. Returns the
    recoveries, the counts and how often a stalled process had to be restarted."""
    ensure_topics(design.settings)
    design.start()
    wait_for(lambda: design.poll()[0], 90, f"{design.label} to hold partitions")
    background = Background(replace(design.env, settings=design.settings), records)
    feeder = threading.Thread(
        target=background.run, args=(sizes.live_rate, RUN_DEADLINE_S), daemon=True
    )
    recoveries: list[dict[str, float]] = []
    kills = 0
    deadline = time.monotonic() + RUN_DEADLINE_S
    feeder.start()
    try:
        while kills < sizes.kills or background.acked < len(records):
            if time.monotonic() > deadline or not feeder.is_alive():
                raise RuntimeError(f"{design.label}: {kills} of {sizes.kills} kills, "
                                   f"{background.acked} of {len(records)} events in time")
            _, _, applied = design.poll()
            if kills < sizes.kills and applied >= sizes.kill_after:
                design.kill()
                kills += 1
                inc = design.start()
                wait_for(lambda: design.poll()[2] > 0, 90, f"{design.label} to apply again")
                recoveries.append({
                    "to_partitions_s": inc.assigned_at - inc.started,
                    "to_ready_s": inc.ready_at - inc.started,
                    "to_first_applied_s": inc.first_applied_at - inc.started,
                })
            time.sleep(POLL_S)
        background.stopped = True
        feeder.join(60)
        if feeder.is_alive() or background.failures:
            raise RuntimeError(f"live production failed: {background.failures[:3]}")
        produced = background.acked
        design.source_ends = true_end_offsets(design.settings, design.source)
        stall_restarts = 0
        while not settle(design, deadline):
            # alive, not failing, and nothing moves: what a liveness probe would not see and an
            # operator would do, once or twice
            if stall_restarts >= MAX_STALL_RESTARTS:
                raise RuntimeError(f"{design.label} stalled {stall_restarts + 1} times; "
                                   f"{design.describe()}")
            stall_restarts += 1
            print(f"[bench] faust_eos: {design.label} stalled: {design.describe()}",
                  file=sys.stderr, flush=True)
            design.kill()
            design.start()
        counts = design.counts()
        forwarded = design.forwarded() if isinstance(design, FaustDesign) else None
    finally:
        background.stopped = True
        feeder.join(10)
        design.kill()
    return {"recoveries": recoveries, "counts": counts, "forwarded": forwarded,
            "stall_restarts": stall_restarts, "produced": produced}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


@scenario(
    "faust_eos",
    "Faust exactly_once + changelog tables vs the worker's idempotent Redis sink: events/s, "
    "counts after SIGKILLs, recovery time",
    repeats=1,
)
def faust_eos(env: BenchEnv, quick: bool) -> Result:
    sizes = QUICK if quick else FULL
    # throughput: one backlog on the environment's topics, a fresh group and state per run
    backlog = workload(sizes, sizes.throughput_orders, seed=22)
    backlog_additions = sum(purchases_per_product(backlog).values())
    started = time.monotonic()
    env.produce(encode_all(backlog))
    rates: dict[str, list[float]] = {"worker": [], "faust": []}
    for _ in range(sizes.throughput_repeats):
        rates["worker"].append(
            throughput(WorkerDesign(env, env.settings), len(backlog), 1.0, sizes.window_s)
        )
        faust = FaustDesign(env, env.settings)
        rates["faust"].append(
            throughput(faust, backlog_additions, len(backlog) / backlog_additions,
                       sizes.window_s)
        )
        if env.existing:
            faust.forget_group()
    events = workload(sizes, sizes.orders)
    want = purchases_per_product(events)
    records = encode_all(events)
    figures: dict[str, Any] = {
        "backlog_events": len(backlog),
        "faust_window_s": sizes.window_s,
        "events": len(records),
        "orders": sizes.orders,
        "duplicates": len(records) - sizes.orders,
        "products": len(want),
        "oracle_count_sum": sum(want.values()),
        "kills": sizes.kills,
        "live_rate": sizes.live_rate,
        "inner_runs": sizes.throughput_repeats,
        "throughput_phase_s": round(time.monotonic() - started, 1),
    }
    for label in ("worker", "faust"):
        figures[f"{label}_events_per_s"] = round(statistics.median(rates[label]))
        figures[f"{label}_events_per_s_each"] = [round(r) for r in rates[label]]
    figures["throughput_ratio"] = round(
        figures["worker_events_per_s"] / max(1, figures["faust_events_per_s"]), 1
    )
    # kills: each design on topics of its own, the same events produced live
    base = env.settings.kafka_topic_prefix
    for label, make in (("worker", WorkerDesign), ("faust", FaustDesign)):
        settings = env.settings.model_copy(update={"kafka_topic_prefix": f"{base}kill-{label}."})
        design = make(env, settings)
        started = time.monotonic()
        run = kill_run(design, records, sizes)
        figures[f"{label}_kill_run_s"] = round(time.monotonic() - started, 1)
        if env.existing and isinstance(design, FaustDesign):
            design.forget_group()
        recoveries = run["recoveries"]
        figures[f"{label}_stall_restarts"] = run["stall_restarts"]
        figures[f"{label}_kill_run_events_sent"] = run["produced"]
        figures[f"{label}_recovery_s"] = _median([r["to_first_applied_s"] for r in recoveries])
        figures[f"{label}_recovery_s_each"] = [round(r["to_first_applied_s"], 2)
                                               for r in recoveries]
        for part in ("to_partitions_s", "to_ready_s"):
            figures[f"{label}_{part}"] = _median([r[part] for r in recoveries])
        for source, got in run["counts"].items():
            for key, value in compare(got, want).items():
                figures[f"{label}_{source}_{key}"] = value
        if run["forwarded"] is not None:
            # where the wrong counts come from: an order's products sent on twice, or never
            sent = run["forwarded"]
            pairs = {e.payload.order_id: {(e.payload.order_id, line.product_id)
                                          for line in e.payload.lines}
                     for e in events if isinstance(e, ev.PurchaseCompleted)}
            figures["faust_orders_forwarded_twice"] = sum(
                any(sent.get(pair, 0) > 1 for pair in mine) for mine in pairs.values())
            figures["faust_orders_never_forwarded"] = sum(
                any(sent.get(pair, 0) == 0 for pair in mine) for mine in pairs.values())
        if isinstance(design, WorkerDesign):
            figures["worker_views_wrong"] = asyncio.run(
                _views_wrong(env.settings.redis_url, design.namespace, events)
            )
    figures["recovery_ratio"] = (
        round(figures["faust_recovery_s"] / figures["worker_recovery_s"], 2)
        if figures["faust_recovery_s"] and figures["worker_recovery_s"] else None
    )
    return Result(
        ingest={
            "worker_events_per_s": "our worker (faust_eos purchases)",
            "faust_events_per_s": "Faust exactly_once",
        },
        summary=lambda f: (
            f"worker {f['worker_events_per_s']:,} ev/s vs Faust exactly_once "
            f"{f['faust_events_per_s']:,} ev/s = {f['throughput_ratio']}x; after "
            f"{f['kills']} SIGKILLs, products counted wrong (of {f['products']}): worker "
            f"{f['worker_redis_products_wrong']}, Faust {f['faust_changelog_products_wrong']} "
            f"(+{f['faust_changelog_over']}/-{f['faust_changelog_under']} on "
            f"{f['oracle_count_sum']:,}); restart to the first event applied: worker "
            f"{f['worker_recovery_s']} s, Faust {f['faust_recovery_s']} s "
            f"({f['recovery_ratio']}x)"
        ),
        figures=figures,
        # the design kept must be exact after crashes; Faust's figures are the comparison
        targets=[
            Target("worker_redis_products_wrong", "<", 1),
            Target("worker_views_wrong", "<", 1),
        ],
        notes=[
            f"events: purchases ({sizes.users:,} users, {sizes.products:,} products, Zipf, 1-2 "
            f"lines) plus {sizes.duplicate_share:.0%} duplicates at random later positions; "
            f"throughput on a backlog of {figures['backlog_events']:,}, kill runs on "
            f"{len(records):,} ({sizes.orders:,} orders); the count compared: distinct orders "
            "per product, the oracle computed from the event list",
            "throughput: a fresh process (new group, empty state) per run on the backlog; "
            "events/s applied from its first event applied to the last (the worker: the whole "
            f"backlog) or to {sizes.window_s:g} s later (Faust: additions to its table x events "
            "per addition); `*_each` per run, the headline their median",
            f"kill runs: the same events produced live at {sizes.live_rate:g} ev/s into topics "
            f"of the design's own, from the first again when through (re-sent events are more "
            f"duplicates; `*_kill_run_events_sent`) until each was sent and {sizes.kills} "
            f"SIGKILLs were done, each once the process had applied {sizes.kill_after} since it "
            "started, restart at once; counts read once every event is committed (a process "
            f"that moves nothing for {STALL_S:g} s meanwhile is restarted: "
            "`*_stall_restarts`). Faust: `served` = its "
            "table as the live process serves it, `changelog` = what a restart recovers (read "
            "committed, to the end); `faust_orders_forwarded_twice`/`_never_forwarded`: orders "
            "whose products reached the repartition topic twice or never",
            f"recovery: restart to the first event applied, median over the kills "
            f"(`*_recovery_s_each`); `*_to_partitions_s`: until the process held partitions (the "
            f"killed member leaving the group: session timeout {SESSION_TIMEOUT_MS / 1000:g} s "
            "for both); `faust_to_ready_s`: until its tables were rebuilt from the changelogs",
            "`worker_views_wrong`: products whose served proof (bought windows etc.) differs "
            "from the processor's oracle after the kills",
        ],
    )
