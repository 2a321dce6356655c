"""Bench scenario ``broker_fetch``: from a record's produce acknowledgement to an aiokafka
consumer having it, with aiokafka's default fetch wait (500 ms, what the worker uses) and 100 ms:
the broker's share of ``e2e_latency`` (:mod:`bench.e2e`). Run: ``python -m bench --only broker_fetch``.
"""

from __future__ import annotations

import asyncio
import time

from confluent_kafka import Producer

from bench.env import BenchEnv
from bench.measure import percentile
from bench.registry import Result, scenario
from contracts.topics import ORDERS
from socialproof.kafka import producer_config, topic_name


async def _fetch_latency(env: BenchEnv, wait_ms: int, messages: int) -> list[float]:
    """ms from a record's produce acknowledgement to an aiokafka consumer having it."""
    from aiokafka import AIOKafkaConsumer

    topic = topic_name(env.settings, ORDERS)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=env.settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=wait_ms,
    )
    await consumer.start()
    producer = Producer(producer_config(env.settings, "bench-fetch"))
    latencies: list[float] = []
    try:
        await consumer.getmany(timeout_ms=1_000)  # joined and positioned at the end
        for i in range(messages):
            producer.produce(topic, key=b"bench-fetch", value=b"{}")
            producer.flush(10)
            acked = time.monotonic()
            deadline = acked + 5
            got = False
            while not got and time.monotonic() < deadline:
                fetched = await consumer.getmany(timeout_ms=50)
                got = any(fetched.values())
            if got:
                latencies.append((time.monotonic() - acked) * 1000)
            await asyncio.sleep(0.02 + (i % 5) * 0.01)  # not in step with any broker timer
    finally:
        await consumer.stop()
    return latencies


@scenario(
    "broker_fetch",
    "produce ack → consumer has the record, with aiokafka's default fetch wait (500 ms, what "
    "the worker uses) and 100 ms: the broker's share of e2e_latency",
)
def broker_fetch(env: BenchEnv, quick: bool) -> Result:
    messages = 5 if quick else 20
    figures: dict = {"messages": messages}
    for wait_ms in (500, 100):
        ms = asyncio.run(_fetch_latency(env, wait_ms, messages))
        figures[f"wait{wait_ms}_p50_ms"] = round(percentile(ms, 0.5), 1)
        figures[f"wait{wait_ms}_max_ms"] = round(max(ms, default=float("nan")), 1)
        figures[f"wait{wait_ms}_received"] = len(ms)
    return Result(
        summary=lambda f: (
            f"produce ack → consumer: p50 {f['wait500_p50_ms']} ms with fetch_max_wait_ms=500 "
            f"(aiokafka default, the worker's), {f['wait100_p50_ms']} ms with 100"
        ),
        figures=figures,
        notes=[
            "an idle consumer's fetch is parked at the broker, which answers it as soon as a "
            "record arrives: the two waits should deliver equally fast, so the worker keeps "
            "aiokafka's default (500 ms) and no e2e_latency figure pays for a long fetch wait",
        ],
    )
