"""Measurement helpers shared by the scenarios: percentiles, a process's CPU and memory from
``/proc``, raw SSE clients, and the event mix the worker scenarios produce.

Nothing here starts a server or registers a scenario (that is :mod:`bench.env` and the scenario
modules); every scenario module may import it, and it imports no other bench module.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

#: the activity mix of the worker scenarios (throughput, burst_lag, e2e_latency): purchases,
#: shares, reviews, refunds and consent changes, as fractions of the events
THROUGHPUT_MIX = {"purchase": 0.45, "share": 0.35, "review": 0.15, "refund": 0.03, "consent": 0.02}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


# --- processes, from /proc ---------------------------------------------------------------------


def rss_mb(pid: int | str, field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` ("self": this process) in MB; ``field="VmHWM"``: its peak.
    (Not ``getrusage``'s ru_maxrss: Linux carries that over an exec, so a subprocess of a big
    bench process reports its parent's peak.)"""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def peak_rss_mb(pid: int | str) -> float:
    return rss_mb(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: a server with worker processes (granian's notifier: an idle
    supervisor whose workers do the serving) is measured as the whole tree."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, ()))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (a notifier with several processes)."""
    return _tree_sum(pid, cpu_seconds)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB (what their container holds)."""
    return _tree_sum(pid, rss_mb)


def _tree_sum(pid: int, read: Callable[[int], float]) -> float:
    total = 0.0
    for member in process_tree(pid):
        try:
            total += read(member)
        except (OSError, RuntimeError):
            continue  # gone meanwhile
    return total


def own_cpu_seconds() -> float:
    """CPU seconds of the bench process itself (its clients)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


# --- SSE clients -------------------------------------------------------------------------------
# Raw asyncio sockets: an HTTP library would cost the 2-core machine more CPU than the server
# under test.


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


async def read_events(
    conn: SseConn,
    on_state: Callable[[Any, float], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Each event is one chunk (the server sends one per message), so lines stay whole;
    chunk-size lines and comments (heartbeats) are skipped. ``on_state`` gets each state with
    ``clock()`` taken as its line is read (``time.time`` to compare with other processes'
    clocks, as e2e_latency does)."""
    reader = conn.reader
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            on_state(orjson.loads(line[6:]), clock())


def committed_offsets(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    """A consumer group's committed offsets, {(topic, partition): offset}, unset ones left out."""
    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=10
    )
    listed = futures[group].result().topic_partitions or []
    return {(tp.topic, tp.partition): tp.offset for tp in listed if tp.offset >= 0}


def read_committed(
    bootstrap: str,
    topic: str,
    partitions: int | None = None,
    start: dict[int, int] | None = None,
    timeout: float = 30.0,
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of the committed records of ``topic`` from ``start`` (per partition; default
    the beginning) to the end of every partition (its end-of-partition event, past the last
    commit marker, not the watermark), in each partition's order: what a ``read_committed``
    consumer such as Faust's table recovery or a Quix app's reader sees. ``partitions`` defaults
    to the topic's partition count on the broker."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",  # assign only: never joins
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        if partitions is None:
            numbers = list(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        else:
            numbers = list(range(partitions))
        start = start or {}
        consumer.assign([TopicPartition(topic, p, start.get(p, OFFSET_BEGINNING)) for p in numbers])
        pending = set(numbers)
        records: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.2):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise KafkaException(msg.error())
                records.append((msg.key(), msg.value()))
        if pending:
            raise RuntimeError(f"no end of {topic} partitions {sorted(pending)} in {timeout}s")
        return records
    finally:
        consumer.close()
