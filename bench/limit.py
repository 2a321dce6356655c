"""Bench scenario ``limit``: what this machine can do at all with the worker's data, broker and
Redis, so that every ingest figure of a run can be stated as a fraction of it.

The limit pipeline is the least work an ingest of these events can do: confluent-kafka's batch
API (``Consumer.consume(num_messages=…)``) in a consumer group, ``orjson.loads`` of every value,
two Redis writes per event (``SADD`` of the event id to a dedupe set, ``HINCRBY`` of a
per-subject counter by event type; the subject is the product, or the user of a consent change)
in one non-transactional pipeline per batch, the batch's offsets committed after the pipeline
returned (asynchronously: the next batch is fetched while the commit travels). No validation, no
views, no dead letters: whatever a real worker does beyond this is what its fraction of the
limit prices. Measured at 34,000-52,000 events/s on this 2-core machine (load 0.5-2), about
20 µs of the pipeline's CPU per event against 4-5 µs of Redis': the pipeline is Python-bound,
so keeping one batch's writes in flight while the next is decoded (``in_flight=1``, the
worker's design) measured no faster (ABABAB medians 31,900 vs 33,600 events/s, load 2.2) and
the limit stays sequential, as defined.

It runs in a subprocess of its own (``python -m bench.limit <json>``), like the worker it is
compared with: its own interpreter and GIL, nothing of the bench's (polling threads, the
producer's librdkafka threads, garbage of the produced records) in its CPU time, and its
process CPU time (``getrusage``, librdkafka's threads included) is exactly the pipeline's.
The clock and the CPU counters start when the first batch arrives (group join and start-up are
not the pipeline) and stop after the commit of the batch that reaches ``expected_events``.
Redis CPU (``INFO cpu`` used_cpu_sys + used_cpu_user, over the same interval) is reported only
on the bench's own redis-server: on existing servers others' commands would be in it.

:func:`measure_limit` is public: ``throughput`` measures the limit on its own backlog with it,
beside its workers. The ``limit`` scenario produces the throughput workload (the same
:mod:`tools.loadgen` config and seed) and reports the median of three passes over it.
"""

from __future__ import annotations

import json
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.measure import THROUGHPUT_MIX, peak_rss_mb
from bench.registry import Result, scenario

# The pipeline's subprocess runs this module: the imports at the top are the light ones, so its
# RSS is the pipeline's (bench.env and the load generator are imported where they are used).
if TYPE_CHECKING:
    from bench.env import BenchEnv
    from tools.loadgen import LoadGenerator

ROOT = Path(__file__).resolve().parent.parent

#: events per ``consume`` call: the worker's default batch (SOCIALPROOF_WORKER_BATCH_SIZE)
BATCH_SIZE = 5000
#: passes over the backlog whose median the scenario reports
PASSES = 3


def throughput_workload(quick: bool) -> tuple[LoadGenerator, int]:
    """The ``throughput`` scenario's generator and its backlog size (3 windows of 100,000
    events; 2,000 in a quick run), so the limit is measured on the same events."""
    from tools.loadgen import LoadConfig, LoadGenerator

    cfg = LoadConfig(
        seed=11,
        users=200 if quick else 10_000,
        products=50 if quick else 1_000,
        mean_friends=10 if quick else 150,
        mix=THROUGHPUT_MIX,
    )
    return LoadGenerator(cfg), (2_000 if quick else 3 * 100_000)


def measure_limit(
    env: BenchEnv,
    topics: list[str],
    expected_events: int,
    namespace: str,
    batch_size: int = BATCH_SIZE,
    timeout: float = 120.0,
    in_flight: int = 0,
) -> dict[str, Any]:
    """One pass of the limit pipeline over ``topics`` (full names) from their beginning, in a
    fresh consumer group of ``namespace``, writing under ``namespace``: events/s, CPU µs per
    event of its process and (on the bench's own Redis) of Redis, peak RSS. Raises if fewer
    than ``expected_events`` arrive within ``timeout`` seconds. ``in_flight``: batches whose
    writes travel (on a writer thread) while the next is fetched and decoded."""
    from bench.env import group_for

    args = {
        "bootstrap": env.settings.kafka_bootstrap_servers,
        "redis_url": env.settings.redis_url,
        "topics": topics,
        "group": group_for(namespace),
        "namespace": namespace,
        "expected": expected_events,
        "batch_size": batch_size,
        "redis_cpu": not env.existing,
        "timeout": timeout,
        "in_flight": in_flight,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.limit", json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout + 60)
    except BaseException:
        # stopped (SIGTERM, Ctrl-C) or stuck: a SIGTERM lets it close its consumer, which leaves
        # the group, so the environment's clean-up can delete the group (a killed member holds
        # it until its session times out)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"limit pipeline failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _subject(event: dict) -> str:
    payload = event.get("payload") or {}
    product = payload.get("product_id")
    if product is None and payload.get("lines"):
        product = payload["lines"][0].get("product_id")
    return product or payload.get("user_id") or "-"


def _redis_cpu_s(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(args: dict[str, Any]) -> dict[str, Any]:
    """The limit pipeline itself (in the subprocess): see the module docstring."""
    import orjson
    import redis
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": args["bootstrap"],
            "group.id": args["group"],
            "client.id": f"{args['group']}-limit",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    client = redis.Redis.from_url(args["redis_url"])
    seen_key = f"{args['namespace']}:limit:seen"
    count_prefix = f"{args['namespace']}:limit:n:"
    expected, batch_size = args["expected"], args["batch_size"]
    in_flight = args.get("in_flight", 0)
    writer = ThreadPoolExecutor(1) if in_flight else None
    pending: deque[tuple[Any, list[TopicPartition], int]] = deque()
    consumer.subscribe(args["topics"])
    deadline = time.monotonic() + args["timeout"]
    consumed = done = batches = 0
    started = cpu0 = redis0 = 0.0
    try:
        while done < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {expected} events within {args['timeout']} s")
            messages = (
                consumer.consume(num_messages=batch_size, timeout=0.05)
                if consumed < expected
                else []
            )
            if messages:
                if not consumed:
                    started, cpu0 = time.monotonic(), _own_cpu_s()
                    redis0 = _redis_cpu_s(client) if args["redis_cpu"] else 0.0
                pipe = client.pipeline(transaction=False)
                ends: dict[tuple[str, int], int] = {}
                for message in messages:
                    if message.error():
                        raise KafkaException(message.error())
                    event = orjson.loads(message.value())
                    pipe.sadd(seen_key, event["event_id"])
                    pipe.hincrby(count_prefix + _subject(event), event["event_type"], 1)
                    ends[(message.topic(), message.partition())] = message.offset() + 1
                offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
                run = writer.submit(pipe.execute) if writer else pipe.execute()
                pending.append((run, offsets, len(messages)))
                consumed += len(messages)
                batches += 1
            # writes of up to `in_flight` batches travel while the next is fetched and decoded;
            # a batch's offsets are committed once its writes returned, in order
            while len(pending) > (in_flight if messages else 0):
                run, offsets, size = pending.popleft()
                if writer:
                    run.result()
                consumer.commit(offsets=offsets, asynchronous=True)
                done += size
        seconds = time.monotonic() - started
        cpu = _own_cpu_s() - cpu0
        redis_cpu = _redis_cpu_s(client) - redis0 if args["redis_cpu"] else None
    finally:
        if writer:
            writer.shutdown(cancel_futures=True)
        consumer.close()  # also settles the last asynchronous commit
        client.close()
    figures: dict[str, Any] = {
        "events": done,
        "batches": batches,
        "seconds": round(seconds, 3),
        "events_per_s": round(done / seconds) if seconds > 0 else 0,
        "cpu_us_per_event": round(cpu / done * 1e6, 1),
        "rss_mb": round(peak_rss_mb("self"), 1),
    }
    if redis_cpu is not None:
        figures["redis_cpu_us_per_event"] = round(redis_cpu / done * 1e6, 1)
    return figures


def median_of(passes: list[dict[str, Any]], prefix: str = "limit_") -> dict[str, Any]:
    """The median of each figure over ``passes`` (figures some pass lacks are left out), under
    ``prefix``, and the passes' rates as ``<prefix>events_per_s_each``."""
    figures: dict[str, Any] = {}
    for key in ("events_per_s", "cpu_us_per_event", "redis_cpu_us_per_event", "rss_mb"):
        values = [p[key] for p in passes if p.get(key) is not None]
        if values and len(values) == len(passes):
            med = statistics.median(values)
            figures[f"{prefix}{key}"] = round(med) if key == "events_per_s" else round(med, 1)
    figures[f"{prefix}events_per_s_each"] = [p["events_per_s"] for p in passes]
    return figures


@scenario(
    "limit",
    "what the machine can do at all on the throughput data: batch consume, orjson, 2 pipelined "
    "Redis writes per event, commit (every ingest figure is stated as a fraction of it)",
    repeats=1,
)
def limit(env: BenchEnv, quick: bool) -> Result:
    from bench.env import encode_all, new_namespace
    from socialproof.kafka import topic_name

    gen, n = throughput_workload(quick)
    records = encode_all(gen.activity_events(n))
    env.produce(records)
    topics = sorted({topic_name(env.settings, t) for t, _, _ in records})
    passes = [measure_limit(env, topics, n, new_namespace()) for _ in range(1 if quick else PASSES)]
    figures: dict[str, Any] = {
        "events": n,
        "inner_runs": len(passes),
        "batch_size": BATCH_SIZE,
        **median_of(passes, prefix=""),
    }

    def summary(f: dict[str, Any]) -> str:
        redis_part = (
            f" + Redis {f['redis_cpu_us_per_event']} µs" if "redis_cpu_us_per_event" in f else ""
        )
        return (
            f"limit {f['events_per_s']:,} ev/s (passes: "
            f"{' / '.join(f'{r:,}' for r in f['events_per_s_each'])}); CPU per event: "
            f"consumer {f['cpu_us_per_event']} µs{redis_part}; {f['rss_mb']} MB"
        )

    return Result(
        summary=summary,
        figures=figures,
        notes=[
            "a subprocess: confluent-kafka Consumer.consume batches of "
            f"{BATCH_SIZE:,}, orjson.loads, SADD event id + HINCRBY per-product counter in one "
            "non-transactional pipeline per batch, asynchronous commit after it; timed from the "
            "first batch to the last commit",
            f"the median of {PASSES} passes over the same backlog (fresh group and namespace "
            "each); CPU of the process by getrusage (librdkafka threads included), of Redis by "
            "INFO cpu (not on existing servers)",
        ],
    )


if __name__ == "__main__":
    # a stop unwinds, so the consumer is closed and leaves its group
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(run_pipeline(json.loads(sys.argv[1]))), flush=True)
