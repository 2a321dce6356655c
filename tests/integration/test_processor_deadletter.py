"""Bad records never stop the worker: each goes to the dead-letter topic with its original bytes,
a reason and its source topic/partition/offset, and the events after it are still counted."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from contracts.topics import DEAD_LETTERS, ORDERS, SHARES, DeadLetter
from socialproof.devstack import Stack
from socialproof.kafka import EventPublisher
from socialproof.settings import Settings
from tests.integration.test_counters_store import purchase
from tests.integration.test_processor_support import publish
from tests.support.waiting import wait_for


def good_purchase_json(**override: object) -> dict:
    body = json.loads(
        purchase(f"o-{uuid.uuid4().hex[:6]}", "u-dl", "p-dl", datetime.now(UTC)).model_dump_json()
    )
    body.update(override)
    return body


def read_dead_letters(settings: Settings, wanted: set[tuple[str, int, int]]) -> dict:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"test-dl-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # assign, not subscribe: no consumer-group join to wait for
    consumer.assign(
        [
            TopicPartition(DEAD_LETTERS.name, p, OFFSET_BEGINNING)
            for p in range(DEAD_LETTERS.partitions)
        ]
    )
    found: dict[tuple[str, int, int], DeadLetter] = {}
    deadline = time.monotonic() + 30
    try:
        while (
            time.monotonic() < deadline and set(found) < wanted | set(found) and wanted - set(found)
        ):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            letter = DeadLetter.model_validate_json(msg.value())
            source = (letter.source_topic, letter.source_partition, letter.source_offset)
            if source in wanted:
                found[source] = letter
    finally:
        consumer.close()
    return found


async def test_bad_records_are_dead_lettered_with_their_bytes_and_origin(
    stack: Stack, settings: Settings, notifier_api: httpx.Client, uid
) -> None:
    # Given five unusable records, one of each kind of problem
    padded = good_purchase_json()
    padded["payload"]["pad"] = "x" * (1024 * 1024 + 10)
    bad = {
        "not_json": (ORDERS.name, b'{"event_type": "purchase.completed", oops'),
        "invalid": (
            ORDERS.name,
            json.dumps(good_purchase_json(payload={"order_id": "o"})).encode(),
        ),
        "unknown_event_type": (
            SHARES.name,
            json.dumps(good_purchase_json(event_type="coupon.redeemed")).encode(),
        ),
        "unsupported_schema_version": (
            ORDERS.name,
            json.dumps(good_purchase_json(schema_version=2)).encode(),
        ),
        "too_large": (ORDERS.name, json.dumps(padded).encode()),
    }
    publisher = EventPublisher(settings, client_id="test-deadletter")
    sources: dict[str, tuple[str, int, int]] = {}
    try:
        # When they are produced to event topics, followed by a good purchase
        for reason, (topic, value) in bad.items():
            delivered = await publisher.publish_raw(topic, key=uid("k").encode(), value=value)
            sources[reason] = (delivered.topic, delivered.partition, delivered.offset)
    finally:
        publisher.close()
    product = uid("p")
    await publish(settings, [purchase(uid("o"), uid("u"), product, datetime.now(UTC))])
    # Then the worker keeps going: the good purchase is counted
    wait_for(
        lambda: notifier_api.get(f"/v1/proof/products/{product}").json()["bought"]["24h"] == 1,
        15,
        "the purchase after the bad records to be counted",
    )
    # And each bad record is in the dead-letter topic with reason, original bytes and origin
    letters = read_dead_letters(settings, set(sources.values()))
    for reason, source in sources.items():
        assert source in letters, f"no dead letter for {reason} at {source}"
        letter = letters[source]
        assert letter.reason == reason
        assert letter.error
        assert letter.original_value() == bad[reason][1]
        assert letter.consumer
    assert stack.processes and all(p.running for p in stack.processes)
