"""Runs the Quix Streams peer (:mod:`bench/peer/quix_app.py`) on a backlog the bench produced,
measures it and checks its answers against the oracle.

``measure_peer(env, topics, expected_events, events)`` is what the ``throughput`` scenario
calls on its backlog; :func:`run_peer` and :func:`compare` are its parts (the integration test
uses them to also show that a wrong answer is caught).

How a run goes:

1. a fresh consumer group (``group_for(new_namespace())``, so that the environment's clean-up
   deletes it on existing servers), a results topic under the environment's prefix, a state
   folder in the work folder, and "now" fixed (``now_ms``, default the wall clock at start):
   the app evaluates its windows at that instant and the oracle is evaluated at the same one;
2. the app starts in ``.venv-peer`` (``make peer-venv``; a clear error without it) and works
   through the backlog; done when its group has committed every source partition to its end
   and every repartition partition to its last record (a transactional partition ends with a
   commit marker, one offset past the last record);
3. figures: events/s from the first message processed to the last (the app reports both
   instants, and its process CPU time at each, in its progress file: the clocks are
   CLOCK_MONOTONIC and CLOCK_PROCESS_CPUTIME_ID, so start-up is left out of both), CPU
   µs/event over the same span, peak RSS (VmHWM), and the time until everything was committed
   (its results visible to a read-committed reader; ``events_per_s_to_committed``). Commits
   every ``commit_interval_s``, by default Quix's own default (5 s): each is a Kafka
   transaction, and what a user of Quix would run;
4. its answers (the latest record per product and kind in the results topic, read committed)
   against :class:`services.counters.oracle.Oracle` over the same events at ``now_ms``:
   products checked, products wrong, the first differences in words.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import NewTopic, OffsetSpec

from bench.env import ROOT, BenchEnv, group_for, new_namespace
from bench.measure import committed_offsets, read_committed
from contracts import events as ev
from contracts.topics import ORDERS, REVIEWS, SHARES
from contracts.views import BOUGHT_WINDOWS_MS, SHARE_WINDOWS_MS
from services.counters.oracle import Oracle
from socialproof.kafka import admin_client
from socialproof.processes import ManagedProcess

PEER_VENV = ROOT / ".venv-peer"
PEER_APP = ROOT / "bench" / "peer" / "quix_app.py"
MAKE_TARGET = "peer-venv"
#: partitions of the results topic (the registry's topics have 6)
RESULTS_PARTITIONS = 6
POLL_S = 0.05
#: the results compared, per product (the oracle's names)
KINDS = ("bought", "reviews", "shares")


class PeerUnavailable(RuntimeError):
    """``.venv-peer`` is missing: ``make peer-venv`` builds it."""


def peer_python(venv: Path = PEER_VENV) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        raise PeerUnavailable(
            f"{venv} does not exist: the Quix Streams peer runs in its own virtualenv "
            f"(quixstreams needs confluent-kafka < 2.13); build it with `make {MAKE_TARGET}` "
            "(`make bench` and `make test` do it first)"
        )
    return python


def roles(topics: list[str]) -> dict[str, str]:
    """Each broker topic name's role in the app, from the registry name it ends with: orders,
    reviews, shares, or other (read and dropped)."""
    by_suffix = {ORDERS.name: "orders", REVIEWS.name: "reviews", SHARES.name: "shares"}
    out = {}
    for name in topics:
        out[name] = next((r for s, r in by_suffix.items() if name.endswith(s)), "other")
    return out


@dataclass
class PeerRun:
    figures: dict[str, Any]
    #: the run's namespace (its consumer group is ``group_for(namespace)``)
    namespace: str
    #: product -> kind -> the app's latest answer
    answers: dict[str, dict[str, dict]]
    now_ms: int


# --- Kafka: a group's committed offsets, a topic read committed -------------------------------


# --- the run ---------------------------------------------------------------------------------


class _Done:
    """Whether the app's group has committed everything: the sources to their end, and its
    repartition topics to their last record (end - 1: the end is past the commit marker).
    True only when two checks in a row say so: a client's first look at a topic it has no
    metadata for yet can answer end offsets of 0 (measured with a consumer's watermarks)."""

    def __init__(self, env: BenchEnv, group: str, sources: list[str]) -> None:
        self.admin = admin_client(env.settings)
        self.group = group
        self.source_ends = self._ends(sources)
        self.agreed = 0

    def _ends(self, names: list[str]) -> dict[tuple[str, int], int]:
        meta = self.admin.list_topics(timeout=30).topics
        wanted = {
            TopicPartition(name, p): OffsetSpec.latest()
            for name in names
            for p in meta[name].partitions
        }
        if not wanted:
            return {}
        futures = self.admin.list_offsets(wanted, request_timeout=30)
        return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futures.items()}

    @property
    def source_records(self) -> int:
        return sum(self.source_ends.values())

    def _now(self) -> bool:
        committed = committed_offsets(self.admin, self.group)
        if any(committed.get(tp, 0) < end for tp, end in self.source_ends.items()):
            return False
        internal = [
            name for name in self.admin.list_topics(timeout=10).topics
            if name.startswith(f"repartition__{self.group}--")
        ]
        ends = self._ends(internal)
        return all(end <= 0 or committed.get(tp, 0) >= end - 1 for tp, end in ends.items())

    def __call__(self) -> bool:
        self.agreed = self.agreed + 1 if self._now() else 0
        return self.agreed >= 2


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def _delete_internal_topics(env: BenchEnv, group: str) -> None:
    """Quix's repartition and changelog topics (named after the group, outside the prefix)."""
    admin = admin_client(env.settings)
    names = [
        n for n in admin.list_topics(timeout=30).topics
        if n.startswith((f"repartition__{group}--", f"changelog__{group}--"))
    ]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            try:
                fut.result()
            except KafkaException:
                pass  # gone already; the group's own clean-up is the environment's


def run_peer(
    env: BenchEnv,
    topics: list[str],
    expected_events: int,
    *,
    now_ms: int | None = None,
    commit_interval_s: float = 5.0,
    timeout: float | None = None,
) -> PeerRun:
    """Run the peer over ``topics`` (broker names; their records are the backlog, already
    produced: ``expected_events`` of them) until everything is committed; its figures and
    answers."""
    python = peer_python()
    timeout = 120.0 + expected_events / 500 if timeout is None else timeout
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    namespace = new_namespace()
    group = group_for(namespace)
    results = f"{env.settings.kafka_topic_prefix}peer-{namespace}.results"
    admin = admin_client(env.settings)
    for fut in admin.create_topics(
        [NewTopic(results, num_partitions=RESULTS_PARTITIONS, replication_factor=-1)],
        operation_timeout=30,
    ).values():
        fut.result()
    done = _Done(env, group, topics)
    if done.source_records != expected_events:
        raise ValueError(
            f"the topics hold {done.source_records} records, not the {expected_events} expected"
        )
    progress = env.workdir / f"peer-{namespace}.json"
    argv = [
        str(python), str(PEER_APP),
        "--bootstrap", env.settings.kafka_bootstrap_servers,
        "--group", group,
        "--state-dir", str(env.workdir / f"peer-{namespace}-state"),
        "--now-ms", str(now_ms),
        "--windows", json.dumps({"bought": BOUGHT_WINDOWS_MS, "shares": SHARE_WINDOWS_MS}),
        "--results", results,
        "--progress", str(progress),
        "--commit-interval-s", str(commit_interval_s),
    ]
    for name, role in roles(topics).items():
        argv += [f"--{role}", name]
    proc = ManagedProcess(
        name="quix-peer", argv=argv, cwd=str(env.workdir), echo=False,
        log_path=env.workdir / f"peer-{namespace}.log",
    )
    started = time.monotonic()
    proc.start()
    try:
        deadline = started + timeout
        # the group's offsets are asked for only once the app has processed a message: asked
        # for a group not there yet, librdkafka 2.16.1's ListConsumerGroupOffsets segfaulted
        # the bench (3 runs of 3, in rd_kafka_cgrp_op)
        while not (progress.exists() and json.loads(progress.read_text())["first_monotonic"]
                   and done()):
            proc.ensure_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Quix peer did not finish {expected_events} events in {timeout:.0f} s; "
                    f"progress {progress.read_text() if progress.exists() else None}; its last "
                    f"output:\n{proc.tail(15)}"
                )
            time.sleep(POLL_S)
        committed_at = time.monotonic()
        assert proc.proc is not None
        peak_rss = _peak_rss_mb(proc.proc.pid)
        proc.stop()
        report = json.loads(progress.read_text())
        records = read_committed(env.settings.kafka_bootstrap_servers, results, timeout=60.0)
    finally:
        proc.stop()
        if env.existing:
            _delete_internal_topics(env, group)
    consumed = sum(report["counts"].get(name, 0) for name in topics)
    if consumed != expected_events:
        raise RuntimeError(f"the peer processed {consumed} source records of {expected_events}")
    span = report["last_monotonic"] - report["first_monotonic"]
    cpu = report["last_cpu_s"] - report["first_cpu_s"]
    figures = {
        "events": consumed,
        "events_per_s": round(consumed / span) if span > 0 else None,
        "seconds": round(span, 2),
        "cpu_us_per_event": round(cpu * 1e6 / consumed, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "start_to_first_s": round(report["first_monotonic"] - started, 2),
        "to_committed_s": round(committed_at - report["first_monotonic"], 2),
        "events_per_s_to_committed": round(consumed / (committed_at - report["first_monotonic"])),
        "processed_per_topic": report["counts"],
        "commit_interval_s": commit_interval_s,
        "now_ms": now_ms,
    }
    return PeerRun(figures, namespace, answers(records), now_ms)


# --- the check -------------------------------------------------------------------------------


def answers(records: list[tuple[bytes | None, bytes | None]]) -> dict[str, dict[str, dict]]:
    """The latest answer per product and kind (records of one product share a partition, so
    the last one read is the latest)."""
    out: dict[str, dict[str, dict]] = {}
    for key, value in records:
        if key is None or value is None:
            continue
        answer = orjson.loads(value)
        out.setdefault(key.decode(), {})[answer.pop("kind")] = answer
    return out


def _empty() -> dict[str, dict]:
    return {
        "bought": {label: 0 for label in BOUGHT_WINDOWS_MS},
        "reviews": {"count": 0, "average": None,
                    "histogram": {str(s): 0 for s in range(1, 6)}},
        "shares": {**{label: 0 for label in SHARE_WINDOWS_MS}, "total": 0, "by_channel": {}},
    }


def per_product(events: list[ev.Event]) -> dict[str, list[ev.Event]]:
    """Each product's share of the events: every event of the orders with a purchase line of it
    (purchases, refunds, cancellations), its reviews and its shares. The oracle's answers for a
    product depend on nothing else (erasure aside), so an oracle per product answers as one
    over everything, in time linear in the events instead of products x events (measured: one
    oracle's ``shares`` and ``reviews`` for 1,000 products over 300,000 events took minutes)."""
    by_order: dict[str, list[ev.Event]] = {}
    lines: dict[str, set[str]] = {}
    out: dict[str, list[ev.Event]] = {}
    for e in events:
        if isinstance(e, ev.PurchaseCompleted | ev.OrderRefunded | ev.OrderCancelled):
            by_order.setdefault(e.payload.order_id, []).append(e)
            if isinstance(e, ev.PurchaseCompleted):
                for line in e.payload.lines:
                    lines.setdefault(line.product_id, set()).add(e.payload.order_id)
        elif isinstance(e, ev.ReviewPosted | ev.ReviewEdited | ev.ReviewDeleted | ev.ProductShared):
            out.setdefault(e.payload.product_id, []).append(e)
    for product, orders in lines.items():
        out.setdefault(product, []).extend(e for o in sorted(orders) for e in by_order[o])
    return out


def expected(events: list[ev.Event], now_ms: int) -> dict[str, dict[str, dict]]:
    """The oracle's answers, in the peer's shape: bought windows, reviews (count, average,
    histogram) and shares (windows, total, channels) per product."""
    if any(isinstance(e, ev.UserErased) for e in events):
        raise ValueError("the peer does not model erasure: check it on events without any")
    out = {}
    for product, mine in sorted(per_product(events).items()):
        oracle = Oracle(mine)
        reviews = oracle.reviews(product)
        out[product] = {
            "bought": oracle.bought(product, now_ms),
            "reviews": {k: reviews[k] for k in ("count", "average", "histogram")},
            "shares": oracle.shares(product, now_ms),
        }
    return out


def compare(got: dict[str, dict[str, dict]], want: dict[str, dict[str, dict]],
            show: int = 5) -> dict[str, Any]:
    """Products checked (every product either side knows), products wrong, and the first
    ``show`` differences in words. A kind the peer never wrote for a product is its zeros."""
    wrong: list[str] = []
    differences: list[str] = []
    for product in sorted(set(got) | set(want)):
        mine, theirs = _empty() | got.get(product, {}), _empty() | want.get(product, {})
        bad = [k for k in KINDS if mine[k] != theirs[k]]
        if bad:
            wrong.append(product)
            if len(differences) < show:
                differences += [
                    f"{product} {k}: peer {mine[k]} != oracle {theirs[k]}" for k in bad
                ][: show - len(differences)]
    return {
        "products_checked": len(set(got) | set(want)),
        "products_wrong": len(wrong),
        "first_differences": differences,
    }


def measure_peer(
    env: BenchEnv,
    topics: list[str],
    expected_events: int,
    events: list[ev.Event],
    *,
    now_ms: int | None = None,
    commit_interval_s: float = 5.0,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The peer over the backlog in ``topics`` (broker names, ``expected_events`` records:
    ``events``, already produced), checked against the oracle of ``events``. Figures:
    ``events_per_s``, ``cpu_us_per_event``, ``peak_rss_mb``, ``products_checked``,
    ``products_wrong``, ``first_differences`` and the run's details (see :func:`run_peer`)."""
    run = run_peer(env, topics, expected_events, now_ms=now_ms,
                   commit_interval_s=commit_interval_s, timeout=timeout)
    return {**run.figures, **compare(run.answers, expected(events, run.now_ms))}
