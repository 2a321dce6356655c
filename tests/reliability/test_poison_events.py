"""Poison records produced straight into the event topics with kcat (no socialproof code on the
producing side, as a misbehaving foreign producer would): not JSON, wrong schema, unknown type,
a future schema version and a 2 MB payload. Each lands in the dead-letter topic with its original
bytes and reason, the worker keeps going, and the counters are untouched.

The 2 MB record is over an event topic's max.message.bytes (Kafka's default, about 1 MiB): the
broker refuses it and kcat says so. It reaches the worker only once an operator raised that
topic's limit, and is then dead-lettered as ``too_large``.

Uses a private broker, so the dead-letter topic holds only this module's letters.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis as redis_sync
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from contracts.topics import DEAD_LETTERS, ORDERS, REVIEWS, SHARES, USERS, DeadLetter
from tests.integration.test_counters_store import purchase
from tests.integration.test_processor_deadletter import end_offsets, raised_max_message_bytes
from tests.integration.test_processor_support import dump, first_difference
from tests.support import kcat
from tests.support.private import PrivateBackend, metric_total
from tests.support.storefront import publish
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def dead_letters(bootstrap: str, keys: set[str], timeout: float = 30) -> dict[str, DeadLetter]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "fetch.message.max.bytes": 16_000_000})
    consumer.assign([TopicPartition(DEAD_LETTERS.name, p, OFFSET_BEGINNING)
                     for p in range(DEAD_LETTERS.partitions)])
    found: dict[str, DeadLetter] = {}
    deadline = time.monotonic() + timeout
    try:
        while keys - set(found) and time.monotonic() < deadline:
            msg = consumer.poll(0.3)
            if msg is None or msg.error():
                continue
            letter = DeadLetter.model_validate_json(msg.value())
            key = base64.b64decode(letter.source_key_b64 or "").decode(errors="replace")
            if key in keys:
                found[key] = letter
    finally:
        consumer.close()
    return found


def produce_once_accepted(bootstrap: str, topic: str, key: str, path: Path) -> None:
    """kcat produces the file until the topic accepts it; only 'too large' refusals are retried."""

    def attempt() -> bool:
        done = kcat.produce(bootstrap, topic, key, path, check=False)
        assert done.returncode == 0 or b"Message size too large" in done.stderr, (
            done.stderr[-2000:])
        return done.returncode == 0

    wait_for(attempt, 10, f"{topic} to accept a {path.stat().st_size}-byte record")


def good_json(event_type: str = "purchase.completed", **override: object) -> dict:
    body = json.loads(purchase(f"o-{uuid.uuid4().hex[:6]}", "u-poison", "p-poison",
                               datetime.now(UTC)).model_dump_json())
    body["event_type"] = event_type
    body.update(override)
    return body


def test_poison_records_go_to_the_dead_letter_topic_and_touch_no_counter(
    private: PrivateBackend, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    ns = f"poison{run}"
    worker = private.worker(ns, f"g-poison-{run}")
    notifier = private.service("notifier", ns)
    item = f"p-{run}"
    # Given a store with counters in it
    publish(private.settings, purchase(f"o-{run}-1", f"u-{run}-1", item, datetime.now(UTC)))
    proof_url = f"{notifier.url}/v1/proof/products/{item}"
    wait_for(lambda: httpx.get(proof_url).json()["bought"]["24h"] == 1, 15, "the first purchase")
    client = redis_sync.Redis.from_url(private.redis_url, decode_responses=True)
    before = dump(client, ns)
    letters_before = metric_total(worker.url, "socialproof_dead_letters_total")
    # When five unusable records are produced with kcat into the event topics
    big = good_json()
    big["payload"]["pad"] = "x" * (2 * 1024 * 1024)
    poison = {
        "not_json": (ORDERS.name, b"\x00\xffnot json at all {"),
        "invalid": (ORDERS.name, json.dumps(good_json(payload={"order_id": 7})).encode()),
        "unknown_event_type": (SHARES.name, json.dumps(good_json("coupon.redeemed")).encode()),
        "unsupported_schema_version": (
            REVIEWS.name, json.dumps(good_json(schema_version=99)).encode()),
        "too_large": (USERS.name, json.dumps(big).encode()),
    }
    keys: dict[str, str] = {}
    for reason, (topic, value) in poison.items():
        path = tmp_path / reason
        path.write_bytes(value)
        keys[reason] = f"poison-{run}-{reason}"
        if reason != "too_large":
            kcat.produce(private.bootstrap, topic, keys[reason], path)
            continue
        # the 2 MB record: refused by the topic as it is (nothing appended), then accepted once
        # an operator raised the topic's max.message.bytes; KRaft applies the new limit a moment
        # after it reads back, and a record refused in that moment is refused whole: sent again
        ends = end_offsets(private.bootstrap, topic)
        refused = kcat.produce(private.bootstrap, topic, f"{keys[reason]}-refused", path,
                               check=False)
        assert refused.returncode != 0 and b"Message size too large" in refused.stderr, (
            refused.returncode, refused.stderr[-2000:])
        assert end_offsets(private.bootstrap, topic) == ends
        with raised_max_message_bytes(private.bootstrap, topic):
            produce_once_accepted(private.bootstrap, topic, keys[reason], path)
    # Then each is dead-lettered (the worker handled them; the refused record never reached it) ...
    wait_for(
        lambda: metric_total(worker.url, "socialproof_dead_letters_total") - letters_before == 5,
        20, "five dead letters",
    )
    # ... and the store is exactly as it was: no counter, feed or fact touched
    after = dump(client, ns)
    assert after == before, first_difference(before, after)
    client.close()
    # And each poison record is in the dead-letter topic: reason, original bytes, origin
    found = dead_letters(private.bootstrap, set(keys.values()))
    for reason, (topic, value) in poison.items():
        letter = found.get(keys[reason])
        assert letter is not None, f"no dead letter for {reason}"
        assert letter.reason == reason, (reason, letter.reason, letter.error)
        assert letter.source_topic == topic and letter.source_offset >= 0
        assert letter.original_value() == value
    # And the worker keeps going: a good purchase after them is counted
    publish(private.settings, purchase(f"o-{run}-2", f"u-{run}-2", item, datetime.now(UTC)))
    wait_for(lambda: httpx.get(proof_url).json()["bought"]["24h"] == 2, 20,
             "the purchase after the poison to be counted")
    assert worker.proc.running
