"""The engineer's topic commands against a real broker: list, tail, dump/load/copy, dead letters,
consumer groups — including confirmation prompts and invalid input files.

Runs on a private embedded broker (module scope) so the registry's topics start empty; with
``KAFKA_BOOTSTRAP_SERVERS`` set it uses the session broker and unique topics only.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from typer.testing import CliRunner

from cli.main import app
from contracts import codec
from contracts import events as ev
from contracts.topics import DEAD_LETTERS, ORDERS, DeadLetter
from socialproof.kafka import ensure_topics
from socialproof.processes import free_port
from socialproof.settings import Settings
from tests.conftest import ARTIFACTS
from tests.support.backends import Backend
from tests.support.waiting import wait_for
from tools.devstack import embedded_broker, wait_for_broker

runner = CliRunner()


@pytest.fixture(scope="module")
def broker(backend: Backend) -> Iterator[str]:
    """A broker whose registry topics are empty (private embedded one when possible)."""
    if backend.kind != "embedded":
        yield backend.bootstrap
        return
    port = free_port()
    data = ARTIFACTS / "topic-ops-kafka"
    shutil.rmtree(data, ignore_errors=True)
    proc = embedded_broker(
        port, data, echo=False, log_path=ARTIFACTS / "topic-ops-broker.log"
    ).start()
    try:
        wait_for_broker(f"127.0.0.1:{port}", proc=proc)
        ensure_topics(Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}"))
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def env(broker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker)


def make_topic(broker: str, partitions: int = 3, config: dict[str, str] | None = None) -> str:
    name = f"ops-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(10)
    wait_for(lambda: name in admin.list_topics(timeout=5).topics, 10, f"topic {name}")
    return name


def topic_partitions(broker: str, topic: str) -> int | None:
    """The topic's partition count on the broker, None when it does not exist."""
    meta = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics.get(topic)
    return None if meta is None else len(meta.partitions)


def set_configs(broker: str, topic: str) -> dict[str, str]:
    """The configs set on the topic itself (not defaults of the broker)."""
    admin = AdminClient({"bootstrap.servers": broker})
    entries = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    result = next(iter(entries.values())).result(10)
    return {k: e.value for k, e in result.items()
            if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}


def purchase(order: str, user: str = "u1", product: str = "p1", when: datetime | None = None):
    return ev.PurchaseCompleted.create(
        {"order_id": order, "user_id": user, "currency": "EUR",
         "lines": [{"product_id": product, "quantity": 1, "unit_price": "1.00"}]},
        producer="orders", **({"occurred_at": when} if when else {}))


def produce(broker: str, topic: str, events: list, batches: int = 1, **extra) -> None:
    p = Producer({"bootstrap.servers": broker, "linger.ms": 50, "enable.idempotence": True})
    per_batch = max(1, len(events) // batches)
    for i in range(0, len(events), per_batch):
        for e in events[i:i + per_batch]:
            p.produce(topic, key=ORDERS.key_of(e).encode(), value=codec.encode(e),
                      headers=[("event_type", e.event_type.encode())],
                      timestamp=int(e.occurred_at.timestamp() * 1000), **extra)
        assert p.flush(10) == 0


def cli(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def test_list_counts_every_record_of_a_topic_written_in_batches(broker: str) -> None:
    # Given one partition written in three batches
    topic = make_topic(broker, partitions=1)
    produce(broker, topic, [purchase(f"o{i}") for i in range(30)], batches=3)
    # When listing topics
    result = cli("topics", "list", "--json")
    assert result.exit_code == 0, result.output
    info = next(t for t in json.loads(result.stdout) if t["name"] == topic)
    # Then the counts are the real ones
    assert info["records"] == 30
    assert info["end_offsets"] == {"0": 30}
    registry = next(t for t in json.loads(result.stdout) if t["name"] == ORDERS.name)
    assert registry["in_registry"] and registry["partitions"] == ORDERS.partitions


def test_dump_load_dump_gives_identical_files(broker: str, tmp_path: Path) -> None:
    # Given events in every partition of a topic, in several batches, with headers and times
    source, target = make_topic(broker), make_topic(broker)
    base = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    events = [purchase(f"o{i}", user=f"u{i % 7}", when=base + timedelta(minutes=i))
              for i in range(60)]
    produce(broker, source, events, batches=4)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    # When dumped, loaded into an empty topic, and dumped again
    assert cli("topics", "dump", source, "-o", str(first)).exit_code == 0
    loaded = cli("topics", "load", str(first), "--to", target, "--yes")
    assert loaded.exit_code == 0, loaded.output
    assert cli("topics", "dump", target, "-o", str(second)).exit_code == 0
    # Then both files are identical, and complete
    assert first.read_bytes() == second.read_bytes()
    lines = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(lines) == 60
    assert {line["value"]["payload"]["order_id"] for line in lines} == {f"o{i}" for i in range(60)}
    assert all(line["headers"] == [["event_type", "purchase.completed"]] for line in lines)
    assert lines[0]["timestamp_ms"] >= int(base.timestamp() * 1000)


def test_dump_honours_from_and_to(broker: str, tmp_path: Path) -> None:
    topic = make_topic(broker, partitions=1)
    produce(broker, topic, [purchase(f"o{i}") for i in range(10)])
    out = tmp_path / "part.jsonl"
    assert cli("topics", "dump", topic, "--from", "3", "--to", "5", "-o", str(out)).exit_code == 0
    orders = [json.loads(line)["value"]["payload"]["order_id"] for line in out.read_text().splitlines()]
    assert orders == ["o3", "o4", "o5"]


def test_dump_accepts_earliest_and_now_as_the_job_template_uses_them(
    broker: str, tmp_path: Path
) -> None:
    topic = make_topic(broker, partitions=1)
    produce(broker, topic, [purchase(f"o{i}") for i in range(3)])
    out = tmp_path / "all.jsonl"
    result = cli("topics", "dump", topic, "--from", "earliest", "--to", "now", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3
    bad = cli("topics", "dump", topic, "--from", "yesterday-ish")
    assert bad.exit_code == 2
    assert "--from" in bad.output and "ISO-8601" in bad.output


def test_load_reports_invalid_lines_and_loads_nothing_unless_told(
    broker: str, tmp_path: Path
) -> None:
    target = make_topic(broker)
    good = json.loads(codec.encode(purchase("o-good")))
    bad_schema = json.loads(codec.encode(purchase("o-bad")))
    bad_schema["payload"]["lines"][0]["quantity"] = 0
    file = tmp_path / "mixed.jsonl"
    file.write_text("\n".join([
        json.dumps({"key": "o-good", "value": good, "headers": [], "partition": 0}),
        "this is not json",
        json.dumps({"key": "o-bad", "value": bad_schema}),
        json.dumps({"key": "x", "value": {"event_type": "thing.teleported", "schema_version": 1}}),
    ]) + "\n")
    refused = cli("topics", "load", str(file), "--to", target, "--yes")
    assert refused.exit_code == 1
    assert f"{file}:2: not JSON" in refused.output
    assert f"{file}:3: invalid: payload.lines.0.quantity" in refused.output
    assert f"{file}:4: unknown_event_type" in refused.output
    assert "nothing loaded" in refused.output
    assert _count(broker, target) == 0
    loaded = cli("topics", "load", str(file), "--to", target, "--yes", "--skip-invalid")
    assert loaded.exit_code == 0
    assert "loaded 1 record(s)" in loaded.output
    assert _count(broker, target) == 1


def test_load_into_a_registry_topic_refuses_events_that_belong_elsewhere(
    broker: str, tmp_path: Path
) -> None:
    share = ev.ProductShared.create({"share_id": "s1", "user_id": "u", "product_id": "p",
                                     "channel": "x"}, producer="social")
    file = tmp_path / "share.jsonl"
    file.write_text(json.dumps({"key": "p", "value": json.loads(codec.encode(share))}) + "\n")
    result = cli("topics", "load", str(file), "--to", ORDERS.name, "--yes")
    assert result.exit_code == 1
    assert "product.shared does not belong on orders.events" in result.output


def test_writes_ask_first_and_a_refusal_writes_nothing(broker: str, tmp_path: Path) -> None:
    source, target = make_topic(broker), make_topic(broker)
    produce(broker, source, [purchase("o1")])
    file = tmp_path / "one.jsonl"
    assert cli("topics", "dump", source, "-o", str(file)).exit_code == 0
    # no terminal and no --yes: refused
    assert cli("topics", "load", str(file), "--to", target).exit_code == 1
    assert cli("topics", "copy", source, target).exit_code == 1
    assert _count(broker, target) == 0


def test_copy_filters_by_type_and_time(broker: str) -> None:
    source, target = make_topic(broker), make_topic(broker)
    base = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    refund = ev.OrderRefunded.create(
        {"refund_id": "r1", "order_id": "o1", "user_id": "u1",
         "lines": [{"product_id": "p1", "quantity": 1}]}, producer="orders",
        occurred_at=base + timedelta(hours=1))
    produce(broker, source, [purchase("o1", when=base), refund,
                             purchase("o2", when=base + timedelta(hours=5))])
    result = cli("topics", "copy", source, target, "--type", "purchase.completed",
                 "--to-time", (base + timedelta(hours=2)).isoformat(), "--yes")
    assert result.exit_code == 0, result.output
    assert "read 2, wrote 1" in result.output  # o2 is after --to-time
    assert _count(broker, target) == 1


def test_copy_create_makes_the_target_like_the_source_and_copies_every_record(
    broker: str, tmp_path: Path
) -> None:
    # Given a source topic with 5 partitions, configs of its own, and records in every partition
    configs = {"retention.ms": "604800000", "max.message.bytes": "2097152",
               "segment.bytes": "16777216"}
    source = make_topic(broker, partitions=5, config=configs)
    produce(broker, source, [purchase(f"o{i}", user=f"u{i % 7}") for i in range(60)], batches=3)
    target = f"ops-copy-{uuid.uuid4().hex[:10]}"
    assert topic_partitions(broker, target) is None
    # When it is copied to a target that does not exist, with --create
    result = cli("topics", "copy", source, target, "--create", "--yes")
    assert result.exit_code == 0, result.output
    # Then the target was created with the source's partitions and non-default configs, and said so
    assert topic_partitions(broker, target) == 5
    assert set_configs(broker, source) == configs
    assert set_configs(broker, target) == configs
    assert f"created topic {target}: 5 partition(s)" in result.output
    assert "max.message.bytes=2097152" in result.output
    # And every record is in it, in the same partition, with its key, headers and timestamp
    assert "read 60, wrote 60" in result.output
    dumped_source, dumped_target = tmp_path / "source.jsonl", tmp_path / "target.jsonl"
    assert cli("topics", "dump", source, "-o", str(dumped_source)).exit_code == 0
    assert cli("topics", "dump", target, "-o", str(dumped_target)).exit_code == 0
    assert len(dumped_source.read_text().splitlines()) == 60
    assert dumped_target.read_bytes() == dumped_source.read_bytes()


def test_copy_create_takes_explicit_partitions_and_configs_over_the_source(broker: str) -> None:
    # Given a source topic with 3 partitions and a retention of its own
    source = make_topic(broker, partitions=3, config={"retention.ms": "604800000",
                                                      "segment.bytes": "16777216"})
    produce(broker, source, [purchase(f"o{i}") for i in range(10)])
    target = f"ops-copy-{uuid.uuid4().hex[:10]}"
    # When copied with --create, --partitions and a --config that overrides one of them
    result = cli("topics", "copy", source, target, "--create", "--partitions", "2",
                 "--config", "retention.ms=3600000", "--yes")
    assert result.exit_code == 0, result.output
    # Then the explicit values win and the source's other configs are kept
    assert topic_partitions(broker, target) == 2
    assert set_configs(broker, target) == {"retention.ms": "3600000", "segment.bytes": "16777216"}
    assert "read 10, wrote 10" in result.output
    assert _count(broker, target) == 10


def test_load_create_with_partitions_and_configs(broker: str, tmp_path: Path) -> None:
    # Given a dump of 20 events
    source = make_topic(broker, partitions=3)
    produce(broker, source, [purchase(f"o{i}") for i in range(20)])
    file = tmp_path / "twenty.jsonl"
    assert cli("topics", "dump", source, "-o", str(file)).exit_code == 0
    target = f"ops-load-{uuid.uuid4().hex[:10]}"
    # When it is loaded into a topic that is not in the registry, with --create but no partitions
    refused = cli("topics", "load", str(file), "--to", target, "--create", "--yes")
    # Then that is refused, naming the missing option, and nothing is created
    assert refused.exit_code == 2, refused.output
    assert "--partitions is required" in refused.output
    assert topic_partitions(broker, target) is None
    # When loaded with --partitions and two --config
    result = cli("topics", "load", str(file), "--to", target, "--create", "--partitions", "2",
                 "--config", "retention.ms=3600000", "--config", "cleanup.policy=delete", "--yes")
    assert result.exit_code == 0, result.output
    # Then the topic has them and every record
    assert topic_partitions(broker, target) == 2
    assert set_configs(broker, target) == {"retention.ms": "3600000", "cleanup.policy": "delete"}
    assert f"created topic {target}: 2 partition(s)" in result.output
    assert "loaded 20 record(s)" in result.output
    assert _count(broker, target) == 20


def test_load_create_into_a_registry_topic_takes_the_registry_partitions_and_configs(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployment prefix whose registry topics do not exist yet
    prefix = f"ops{uuid.uuid4().hex[:6]}."
    monkeypatch.setenv("SOCIALPROOF_KAFKA_TOPIC_PREFIX", prefix)
    target = prefix + ORDERS.name
    assert topic_partitions(broker, target) is None
    event = purchase("o-registry")
    file = tmp_path / "one.jsonl"
    file.write_text(json.dumps({"key": "o-registry", "value": json.loads(codec.encode(event))})
                    + "\n")
    # When an orders dump is loaded into that deployment's orders topic with --create
    result = cli("topics", "load", str(file), "--to", target, "--create", "--yes")
    assert result.exit_code == 0, result.output
    # Then the topic is the registry's orders topic: its partitions and configs
    assert topic_partitions(broker, target) == ORDERS.partitions
    assert set_configs(broker, target) == ORDERS.config
    assert _order_ids(broker, target) == {"o-registry"}


def test_a_missing_target_without_create_is_an_error_and_creates_nothing(
    broker: str, tmp_path: Path
) -> None:
    # Given a source topic and a dump of it
    source = make_topic(broker, partitions=1)
    produce(broker, source, [purchase("o1")])
    file = tmp_path / "one.jsonl"
    assert cli("topics", "dump", source, "-o", str(file)).exit_code == 0
    missing = f"ops-missing-{uuid.uuid4().hex[:10]}"
    # When loading or copying into a topic that does not exist, without --create
    loaded = cli("topics", "load", str(file), "--to", missing, "--yes")
    copied = cli("topics", "copy", source, missing, "--yes")
    # Then both fail saying to pass --create, and the broker has no such topic
    for result in (loaded, copied):
        assert result.exit_code == 1, result.output
        assert f"target topic {missing!r} does not exist; pass --create" in result.output
    assert topic_partitions(broker, missing) is None


def test_creation_options_are_checked_before_anything_is_written(
    broker: str, tmp_path: Path
) -> None:
    # Given a source topic and a target that does not exist
    source = make_topic(broker, partitions=1)
    produce(broker, source, [purchase("o1")])
    target = f"ops-opts-{uuid.uuid4().hex[:10]}"
    # When the creation options are wrong
    without_create = cli("topics", "copy", source, target, "--partitions", "2", "--yes")
    bad_config = cli("topics", "copy", source, target, "--create", "--config", "retention", "--yes")
    no_partitions = cli("topics", "copy", source, target, "--create", "--partitions", "0",
                        "--yes")
    rejected = cli("topics", "copy", source, target, "--create", "--config",
                   "retention.ms=soon", "--yes")
    # Then each is a clear error naming the option, and nothing is created
    assert without_create.exit_code == 2 and "only apply with --create" in without_create.output
    assert bad_config.exit_code == 2 and "--config takes key=value" in bad_config.output
    assert no_partitions.exit_code == 2 and "--partitions" in no_partitions.output
    assert rejected.exit_code == 1 and f"cannot create topic {target!r}" in rejected.output
    assert topic_partitions(broker, target) is None


def test_tail_decodes_and_filters(broker: str) -> None:
    topic = make_topic(broker, partitions=1)
    produce(broker, topic, [purchase("o1", user="ana"), purchase("o2", user="ben")])
    result = cli("topics", "tail", topic, "--key", "o2")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["event"]["payload"]["user_id"] for r in rows] == ["ben"]


def test_dead_letters_can_be_listed_shown_and_replayed(broker: str) -> None:
    # Given a dead letter whose original bytes are a valid event (the bug was fixed since)
    event = purchase(f"o-dlq-{uuid.uuid4().hex[:6]}")
    letter = DeadLetter(source_topic=ORDERS.name, source_partition=2, source_offset=41,
                        source_key_b64=DeadLetter.b64(b"o-dlq"),
                        value_b64=DeadLetter.b64(codec.encode(event)),
                        reason="invalid", error="payload.x: was wrong", consumer="test")
    p = Producer({"bootstrap.servers": broker})
    p.produce(DEAD_LETTERS.name, key=b"k", value=letter.model_dump_json().encode())
    assert p.flush(10) == 0
    listed = cli("dlq", "list", "--json")
    assert listed.exit_code == 0
    entry = next(i for i in json.loads(listed.stdout) if i["source"] == f"{ORDERS.name}/2/41")
    shown = cli("dlq", "show", str(entry["offset"]))
    assert json.loads(shown.stdout)["reason"] == "invalid"
    assert event.payload.order_id in json.loads(shown.stdout)["original_text"]
    before = _order_ids(broker, ORDERS.name)
    # When replayed
    assert cli("dlq", "replay", str(entry["offset"])).exit_code == 1  # asks first
    replayed = cli("dlq", "replay", str(entry["offset"]), "--yes")
    assert replayed.exit_code == 0, replayed.output
    # Then the original record is back on its source topic
    assert event.payload.order_id not in before
    assert event.payload.order_id in _order_ids(broker, ORDERS.name)


def test_group_lag_and_reset(broker: str) -> None:
    topic = make_topic(broker, partitions=1)
    produce(broker, topic, [purchase(f"o{i}") for i in range(20)], batches=2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 15)], asynchronous=False)
    c.close()
    lag = cli("groups", "lag", group, "--json")
    assert lag.exit_code == 0, lag.output
    assert json.loads(lag.stdout) == [
        {"group": group, "topic": topic, "partition": 0, "committed": 15, "end": 20, "lag": 5}]
    reset = cli("groups", "reset", group, "--to", "earliest", "--topic", topic, "--yes")
    assert reset.exit_code == 0, reset.output
    assert json.loads(cli("groups", "lag", group, "--json").stdout)[0]["lag"] == 20


def _count(broker: str, topic: str) -> int:
    from ops import topics as topicops

    return sum(1 for _ in topicops.read_topic(Settings(kafka_bootstrap_servers=broker), topic))


def _order_ids(broker: str, topic: str) -> set[str]:
    from ops import topics as topicops

    ids = set()
    for rec in topicops.read_topic(Settings(kafka_bootstrap_servers=broker), topic):
        ids.add(json.loads(rec.value)["payload"]["order_id"])
    return ids
