"""Bad records never stop the worker: each goes to the dead-letter topic with its original bytes,
a reason and its source topic/partition/offset, and the events after it are still counted.

A record over an event topic's ``max.message.bytes`` (Kafka's default, about 1 MiB, like the
codec's MAX_EVENT_BYTES) is refused by the broker when it is produced: the producer is told at
once and nothing reaches the worker. Only on a topic whose limit an operator raised does one get
through, and the worker dead-letters it as ``too_large``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from contracts import codec
from contracts.topics import DEAD_LETTERS, ORDERS, SHARES, DeadLetter
from socialproof.kafka import Delivered, EventPublisher, PublishFailed
from socialproof.settings import Settings
from tests.integration.test_counters_store import purchase
from tests.integration.test_processor_support import publish
from tests.support.waiting import wait_for, wait_for_async
from tools.devstack import Stack

#: what a test raises an event topic's max.message.bytes to (the producers' own limit)
RAISED_LIMIT = 8 * 1024 * 1024


def _max_message_bytes(admin: AdminClient, topic: str) -> ConfigEntry:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return next(iter(admin.describe_configs([resource]).values())).result(10)["max.message.bytes"]


def max_message_bytes(bootstrap: str, topic: str) -> int:
    """The largest record batch ``topic`` accepts, as the broker reports it."""
    return int(_max_message_bytes(AdminClient({"bootstrap.servers": bootstrap}), topic).value)


@contextmanager
def raised_max_message_bytes(bootstrap: str, topic: str, limit: int = RAISED_LIMIT
                             ) -> Iterator[None]:
    """``topic``'s max.message.bytes raised to ``limit`` as an operator would (incremental
    AlterConfigs), then put back as it was, also after a failure: the session's topics are
    shared. KRaft applies a changed config a moment after AlterConfigs answers, so both ways
    wait until DescribeConfigs reports the new value."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    before = _max_message_bytes(admin, topic)

    def alter(op: AlterConfigOpType, value: str | None) -> None:
        entry = ConfigEntry("max.message.bytes", value, incremental_operation=op)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        next(iter(admin.incremental_alter_configs([resource]).values())).result(10)

    def reads(value: str) -> bool:
        return _max_message_bytes(admin, topic).value == value

    alter(AlterConfigOpType.SET, str(limit))
    try:
        wait_for(lambda: reads(str(limit)), 10, f"{topic}'s max.message.bytes to be {limit}")
        yield
    finally:
        if before.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
            alter(AlterConfigOpType.SET, before.value)
        else:
            alter(AlterConfigOpType.DELETE, None)
        wait_for(lambda: reads(before.value), 10,
                 f"{topic}'s max.message.bytes to be {before.value} again")


NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                 KafkaError.UNKNOWN_TOPIC_OR_PART}


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The high watermark of every partition of ``topic`` (waiting for partition leaders, which
    a just-created topic may not have yet)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:6]}"})

    def read() -> dict[int, int] | None:
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in parts}
        except KafkaException as exc:
            if exc.args[0].code() not in NO_LEADER_YET:
                raise
            return None

    try:
        return wait_for(read, 30, f"the end offsets of {topic}", interval=0.1)
    finally:
        consumer.close()


async def publish_once_accepted(publisher: EventPublisher, topic: str, key: bytes, value: bytes
                                ) -> Delivered:
    """Publish a record larger than the default limit to a topic whose limit was just raised.
    The broker may still apply the old limit for a moment after DescribeConfigs shows the new
    one: a record refused then is refused whole (nothing appended), so it is sent again."""

    async def attempt() -> Delivered | None:
        try:
            return await publisher.publish_raw(topic, key=key, value=value)
        except PublishFailed as exc:
            if "MSG_SIZE_TOO_LARGE" not in exc.reason:
                raise
            return None

    return await wait_for_async(attempt, 10, f"{topic} to accept a {len(value)}-byte record",
                                interval=0.05)


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


def oversized_purchase() -> bytes:
    """A purchase padded to just over MAX_EVENT_BYTES (still valid JSON)."""
    padded = good_purchase_json()
    padded["payload"]["pad"] = "x" * (1024 * 1024 + 10)
    value = json.dumps(padded).encode()
    assert len(value) > codec.MAX_EVENT_BYTES
    return value


async def test_an_event_topic_refuses_a_record_over_its_max_message_bytes_when_produced(
    settings: Settings, topics: None, uid
) -> None:
    # Given a record over MAX_EVENT_BYTES and an event topic with Kafka's default limit
    value = oversized_purchase()
    bootstrap = settings.kafka_bootstrap_servers
    limit = max_message_bytes(bootstrap, ORDERS.name)
    assert limit < len(value), f"{ORDERS.name} takes records up to {limit} bytes: left raised?"
    before = end_offsets(bootstrap, ORDERS.name)
    publisher = EventPublisher(settings, client_id="test-too-large")
    try:
        # When it is published
        started = time.monotonic()
        with pytest.raises(PublishFailed) as refused:
            await publisher.publish_raw(ORDERS.name, key=uid("k").encode(), value=value)
        took = time.monotonic() - started
    finally:
        publisher.close()
    # Then the broker refuses it at once, for good (no retry helps), and appends nothing
    assert "MSG_SIZE_TOO_LARGE" in refused.value.reason, refused.value.reason
    assert refused.value.retryable is False
    assert took < settings.produce_timeout_ms / 1000, f"refused after {took:.1f}s, not at once"
    assert end_offsets(bootstrap, ORDERS.name) == before


async def test_bad_records_are_dead_lettered_with_their_bytes_and_origin(
    stack: Stack, settings: Settings, notifier_api: httpx.Client, uid
) -> None:
    # Given five unusable records, one of each kind of problem
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
        "too_large": (ORDERS.name, oversized_purchase()),
    }
    publisher = EventPublisher(settings, client_id="test-deadletter")
    sources: dict[str, tuple[str, int, int]] = {}
    try:
        # When they are produced to event topics (the oversized one while an operator has raised
        # the topic's limit, which is put back afterwards), followed by a good purchase
        for reason, (topic, value) in bad.items():
            key = uid("k").encode()
            if reason == "too_large":
                with raised_max_message_bytes(settings.kafka_bootstrap_servers, topic):
                    delivered = await publish_once_accepted(publisher, topic, key, value)
            else:
                delivered = await publisher.publish_raw(topic, key=key, value=value)
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
