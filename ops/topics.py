"""Reading and writing whole topics for engineers: list, tail, dump, load, copy, dead letters,
consumer-group lag and resets. The ``socialproof topics|dlq|groups`` commands are thin wrappers.

"Up to the end" is the high watermark read when the command starts (the last offset + 1, as
the broker contract tests assert), confirmed by librdkafka's partition-EOF event: a read is
complete for a partition once EOF was seen at or beyond that watermark, so records written while
a dump runs are neither waited for forever nor cut off halfway through a fetch.

Dump format: one JSON object per line, keys sorted:
``{"headers": [[name, value], …], "key": "…", "partition": 0, "timestamp_ms": …, "value": {…}}``.
``key``/header values are UTF-8 text (or ``{"b64": "…"}`` when not UTF-8); ``value`` is the
record's JSON, ``null`` for a tombstone, or ``{"b64": "…"}`` for bytes that are not JSON.
Offsets are not part of a line: loading into an empty topic and dumping again gives an identical
file.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType

from contracts import codec
from contracts.topics import DEAD_LETTERS, DeadLetter, Topic
from socialproof.kafka import producer_config, registry_topic, topic_name
from socialproof.settings import Settings


class OpsError(RuntimeError):
    """A problem the engineer must fix (unknown topic, bad file, active group…)."""


# --- positions --------------------------------------------------------------------------------


def parse_position(text: str | None) -> int | datetime | None:
    """'1234' -> offset 1234; '2026-11-24T10:00:00Z' or '2026-11-24' -> a UTC time;
    'earliest' -> the beginning (None); 'now' -> the current time."""
    if text is None:
        return None
    text = text.strip()
    if text.lower() in ("earliest", "beginning"):
        return None
    if text.lower() == "now":
        return datetime.now(UTC)
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(
            f"{text!r} is not an offset (digits), an ISO-8601 time, 'earliest' or 'now'"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- clients ------------------------------------------------------------------------------------


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers,
                        "socket.timeout.ms": 10_000})


def reader(settings: Settings, **extra: Any) -> Consumer:
    """A group-less reader (assign, never subscribe); commits nothing."""
    return Consumer({
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": f"socialproof-ops-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        **extra,
    })


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise OpsError(f"topic {topic!r} does not exist (see `socialproof topics list`)")
    return sorted(meta.partitions)


# --- reading to the end -------------------------------------------------------------------------


@dataclass
class PartitionRange:
    partition: int
    start: int  # first offset to read
    high: int  # reported high watermark when the read began (may under-report)


@dataclass
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, msg: Message) -> Record:
        return cls(msg.partition(), msg.offset(), msg.timestamp()[1], msg.key(), msg.value(),
                   [(k, v if v is not None else b"") for k, v in (msg.headers() or [])])


def _start_offsets(consumer: Consumer, topic: str, parts: list[int],
                   start: int | datetime | None) -> dict[int, int]:
    lows = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0]
            for p in parts}
    if start is None:
        return lows
    if isinstance(start, int):
        return {p: max(start, lows[p]) for p in parts}
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, to_ms(start)) for p in parts], timeout=10)
    out = {}
    for tp in found:
        # -1: no record at or after that time: start at the end (nothing to read)
        out[tp.partition] = tp.offset if tp.offset >= 0 else consumer.get_watermark_offsets(
            TopicPartition(topic, tp.partition), timeout=10)[1]
    return out


def read_topic(
    settings: Settings,
    topic: str,
    *,
    start: int | datetime | None = None,
    stop: int | datetime | None = None,
    follow: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[Record]:
    """Every record from ``start`` to the end (or ``stop``), in a stable order: partition by
    partition, offset order within each (so two dumps of equal topics are equal files). With
    ``follow`` all partitions are read together and the read never ends."""
    consumer = reader(settings)
    try:
        parts = partitions_of(consumer, topic)
        starts = _start_offsets(consumer, topic, parts, start)
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                 for p in parts}
        total = sum(max(0, highs[p] - starts[p]) for p in parts)
        done = 0
        rounds = [parts] if follow else [[p] for p in parts]
        for group in rounds:
            consumer.assign([TopicPartition(topic, p, starts[p]) for p in group])
            finished: set[int] = set()
            while (follow or finished != set(group)) and not should_stop():
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                p = msg.partition()
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= highs.get(p, 0):
                            finished.add(p)
                        continue
                    raise KafkaException(msg.error())
                if p in finished and not follow:
                    continue  # newer than the end we were asked for
                if isinstance(stop, int) and msg.offset() > stop:
                    finished.add(p)  # offsets only grow: this partition is done
                    continue
                if isinstance(stop, datetime) and msg.timestamp()[1] > to_ms(stop):
                    continue  # producer timestamps need not grow: keep reading to the end
                done += 1
                if on_progress:
                    on_progress(done, max(total, done))
                yield Record.of(msg)
            consumer.unassign()
    finally:
        consumer.close()


# --- listing ------------------------------------------------------------------------------------


@dataclass
class TopicInfo:
    name: str
    partitions: int
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]
    records: int
    cleanup_policy: str
    retention_ms: str
    in_registry: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "partitions": self.partitions,
            "start_offsets": self.start_offsets, "end_offsets": self.end_offsets,
            "records": self.records, "cleanup_policy": self.cleanup_policy,
            "retention_ms": self.retention_ms, "in_registry": self.in_registry,
        }


def true_end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The real end of each partition: read from just before the reported high watermark until
    EOF (one small fetch per partition, however long the topic is)."""
    consumer = reader(settings)
    try:
        parts = partitions_of(consumer, topic)
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                 for p in parts}
        ends = {p: high for p, (_, high) in marks.items()}
        pending = {p for p, (low, high) in marks.items() if high > low}
        consumer.assign([TopicPartition(topic, p, max(marks[p][0], marks[p][1] - 1))
                         for p in pending])
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            p = msg.partition()
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    ends[p] = max(ends[p], msg.offset())
                    pending.discard(p)
                    continue
                raise KafkaException(msg.error())
            ends[p] = max(ends[p], msg.offset() + 1)
        if pending:
            raise OpsError(f"no end-of-partition answer for {topic} partitions {sorted(pending)}")
        return ends
    finally:
        consumer.close()


def describe_configs(settings: Settings, topics: list[str]) -> dict[str, dict[str, str]]:
    """cleanup.policy and retention.ms per topic, from the broker when it answers
    DescribeConfigs, else from the registry (marked '(registry)')."""
    out: dict[str, dict[str, str]] = {}
    try:
        adm = admin(settings)  # keep the client alive until its futures resolve
        futures = adm.describe_configs(
            [ConfigResource(ResourceType.TOPIC, t) for t in topics], request_timeout=10)
        for resource, fut in futures.items():
            entries = fut.result()
            out[resource.name] = {k: entries[k].value for k in ("cleanup.policy", "retention.ms")
                                  if k in entries}
    except Exception:  # brokers without DescribeConfigs: fall back to what we asked for
        pass
    for t in topics:
        registry = registry_topic(settings, t)
        if not out.get(t) and registry is not None:
            cfg = registry.config
            out[t] = {"cleanup.policy": cfg["cleanup.policy"] + " (registry)",
                      "retention.ms": cfg["retention.ms"] + " (registry)"}
    return out


def list_topics(settings: Settings, include_internal: bool = False) -> list[TopicInfo]:
    consumer = reader(settings)
    try:
        names = sorted(t for t in consumer.list_topics(timeout=10).topics
                       if include_internal or not t.startswith("__"))
        starts = {t: {p: consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[0]
                      for p in partitions_of(consumer, t)} for t in names}
    finally:
        consumer.close()
    configs = describe_configs(settings, names)
    infos = []
    for name in names:
        ends = true_end_offsets(settings, name)
        infos.append(TopicInfo(
            name=name, partitions=len(ends), start_offsets=starts[name], end_offsets=ends,
            records=sum(ends[p] - starts[name][p] for p in ends),
            cleanup_policy=configs.get(name, {}).get("cleanup.policy", "?"),
            retention_ms=configs.get(name, {}).get("retention.ms", "?"),
            in_registry=registry_topic(settings, name) is not None,
        ))
    return infos


# --- the dump format ----------------------------------------------------------------------------


def _text_or_b64(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode()}


def _from_text_or_b64(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        return base64.b64decode(value["b64"], validate=True)
    raise ValueError("expected a string, null or {\"b64\": \"…\"}")


def record_to_line(record: Record) -> bytes:
    value: Any
    if record.value is None:
        value = None
    else:
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            value = {"b64": base64.b64encode(record.value).decode()}
    line = {
        "partition": record.partition,
        "timestamp_ms": record.timestamp_ms,
        "key": _text_or_b64(record.key),
        "headers": [[k, _text_or_b64(v)] for k, v in record.headers],
        "value": value,
    }
    return orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n"


@dataclass
class LoadRecord:
    line_no: int
    partition: int | None
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class InvalidLine:
    line_no: int
    reason: str


def parse_dump_line(
    raw: bytes, line_no: int, topic: str | None, registry: Topic | None
) -> LoadRecord:
    """One line of a dump file, validated against the contracts for ``topic``, the broker topic
    that is ``registry`` in the topic registry (None: not a registry topic)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    unknown = set(data) - {"partition", "timestamp_ms", "key", "headers", "value"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    try:
        key = _from_text_or_b64(data.get("key"))
        headers = [(str(k), _from_text_or_b64(v) or b"") for k, v in data.get("headers") or []]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"key/headers: {exc}") from None
    value_obj = data.get("value")
    if isinstance(value_obj, dict) and set(value_obj) == {"b64"}:
        value = base64.b64decode(value_obj["b64"])
    elif value_obj is None:
        value = None
    else:
        value = orjson.dumps(value_obj)
    # Registry topics take only their own event types; any other topic takes any valid event.
    if registry is None or registry.value_types:
        if value is None:
            if registry is not None and registry.cleanup_policy != "compact":
                raise ValueError(f"tombstones only belong on compacted topics, not {topic}")
        else:
            try:
                event = codec.decode(value)
            except codec.EventDecodeError as exc:
                raise ValueError(f"{exc.reason}: {exc.detail}") from None
            if registry is not None and not registry.accepts(event):
                raise ValueError(f"{event.event_type} does not belong on {topic}")
    partition = data.get("partition")
    ts = data.get("timestamp_ms")
    if partition is not None and (not isinstance(partition, int) or partition < 0):
        raise ValueError("partition must be a non-negative integer")
    if ts is not None and not isinstance(ts, int):
        raise ValueError("timestamp_ms must be an integer")
    return LoadRecord(line_no, partition, ts, key, value, headers)


def read_dump(lines: Iterator[bytes], topic: str | None, registry: Topic | None
              ) -> tuple[list[LoadRecord], list[InvalidLine]]:
    good: list[LoadRecord] = []
    bad: list[InvalidLine] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            good.append(parse_dump_line(raw, number, topic, registry))
        except ValueError as exc:
            bad.append(InvalidLine(number, str(exc)))
    return good, bad


# --- writing ------------------------------------------------------------------------------------


class Writer:
    """An idempotent producer that raises on the first failed delivery."""

    def __init__(self, settings: Settings) -> None:
        self.producer = Producer({k: v for k, v in producer_config(settings, "socialproof-ops")
                                  .items()})
        self.failures: list[str] = []
        self.delivered = 0

    def _report(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failures.append(err.str())
        else:
            self.delivered += 1

    def write(self, topic: str, *, key: bytes | None, value: bytes | None,
              headers: list[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
              partition: int | None = None) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._report}
        if headers:
            kwargs["headers"] = headers
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:
                self.producer.poll(0.5)  # queue full: wait for deliveries, then retry
        self.producer.poll(0)

    def finish(self, timeout: float = 60) -> None:
        left = self.producer.flush(timeout)
        if left or self.failures:
            raise OpsError(f"{len(self.failures) + left} record(s) not acknowledged: "
                           + "; ".join(self.failures[:3]))


# --- creating a target topic --------------------------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    """What a topic is created with: partitions and topic-level configs. The replication factor
    is always the broker's default (-1 in CreateTopics)."""

    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    def with_overrides(self, partitions: int | None, config: dict[str, str]) -> TopicSpec:
        return TopicSpec(partitions or self.partitions, {**self.config, **config})

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return f"{self.partitions} partition(s), config: {settings or 'broker defaults'}"


@dataclass(frozen=True)
class CreatedTopic:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]

    def describe(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return (f"created topic {self.name}: {self.partitions} partition(s), replication factor "
                f"{self.replication_factor} (broker default), config: "
                f"{settings or 'broker defaults'}")


def topic_partitions(settings: Settings, topic: str) -> int | None:
    """The partition count of ``topic``, or None when the broker has no such topic."""
    consumer = reader(settings)
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    finally:
        consumer.close()
    if meta is None or meta.error is not None or not meta.partitions:
        return None
    return len(meta.partitions)


def missing_target(topic: str) -> OpsError:
    return OpsError(f"target topic {topic!r} does not exist; pass --create to create it "
                    "(the broker does not create topics on first write)")


def dynamic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """The configs set on ``topic`` itself (source DYNAMIC_TOPIC_CONFIG): what was given when it
    was created or altered since, not the broker's defaults."""
    adm = admin(settings)  # keep the client alive until its futures resolve
    futures = adm.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=10)
    try:
        entries = next(iter(futures.values())).result()
    except KafkaException as exc:
        raise OpsError(f"cannot read the configs of {topic!r}: {exc.args[0].str()}") from None
    return {name: entry.value for name, entry in entries.items()
            if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value and entry.value is not None}


def spec_of(settings: Settings, topic: str) -> TopicSpec:
    """An existing topic's partition count and non-default (dynamic) configs."""
    partitions = topic_partitions(settings, topic)
    if partitions is None:
        raise OpsError(f"topic {topic!r} does not exist (see `socialproof topics list`)")
    return TopicSpec(partitions, dynamic_configs(settings, topic))


def create_topic(settings: Settings, topic: str, spec: TopicSpec,
                 timeout: float = 30) -> CreatedTopic:
    """Create ``topic`` (replication factor: the broker's default) and wait until every
    partition has a leader, so records can be written to it at once."""
    adm = admin(settings)  # keep the client alive until its futures resolve
    futures = adm.create_topics(
        [NewTopic(topic, num_partitions=spec.partitions, replication_factor=-1,
                  config=dict(spec.config))],
        operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[topic].result()
    except KafkaException as exc:
        raise OpsError(f"cannot create topic {topic!r}: {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout
    while True:
        meta = adm.list_topics(topic, timeout=10).topics.get(topic)
        ready = (meta is not None and meta.error is None and len(meta.partitions) == spec.partitions
                 and all(p.leader >= 0 for p in meta.partitions.values()))
        if ready:
            replicas = len(next(iter(meta.partitions.values())).replicas)
            return CreatedTopic(topic, spec.partitions, replicas, dict(spec.config))
        if time.monotonic() >= deadline:
            raise OpsError(f"topic {topic!r} was created but its partitions have no leader "
                           f"after {timeout:.0f}s")
        time.sleep(0.1)


def load(settings: Settings, records: list[LoadRecord], topic: str,
         on_progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] = lambda: False) -> int:
    """Produce ``records`` to ``topic`` keeping key, headers, timestamp and — when the topic has
    enough partitions — the partition. Returns how many the broker acknowledged."""
    count = topic_partitions(settings, topic)
    if count is None:
        raise missing_target(topic)
    writer = Writer(settings)
    for i, rec in enumerate(records, start=1):
        if should_stop():
            break
        partition = rec.partition if rec.partition is not None and rec.partition < count else None
        writer.write(topic, key=rec.key, value=rec.value, headers=rec.headers,
                     timestamp_ms=rec.timestamp_ms, partition=partition)
        if on_progress:
            on_progress(i, len(records))
    writer.finish()
    return writer.delivered


def event_type_of(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return data.get("event_type") if isinstance(data, dict) else None


def copy(settings: Settings, source: str, target: str, *, start: datetime | None = None,
         stop: datetime | None = None, event_type: str | None = None,
         on_progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] = lambda: False) -> tuple[int, int]:
    """Copy records (keys, headers, timestamps kept); returns (read, written)."""
    if topic_partitions(settings, target) is None:  # fail early on a missing target
        raise missing_target(target)
    writer = Writer(settings)
    read = 0
    for rec in read_topic(settings, source, start=start, stop=stop, on_progress=on_progress,
                          should_stop=should_stop):
        read += 1
        if event_type and event_type_of(rec.value) != event_type:
            continue
        writer.write(target, key=rec.key, value=rec.value, headers=rec.headers,
                     timestamp_ms=rec.timestamp_ms)
    writer.finish()
    return read, writer.delivered


# --- dead letters -------------------------------------------------------------------------------


@dataclass
class DeadLetterRecord:
    offset: int
    letter: DeadLetter

    def summary(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "source": f"{self.letter.source_topic}/{self.letter.source_partition}"
                      f"/{self.letter.source_offset}",
            "reason": self.letter.reason,
            "error": self.letter.error,
            "failed_at": self.letter.failed_at.isoformat(),
            "bytes": len(self.letter.original_value() or b""),
        }


def dead_letters(settings: Settings, reason: str | None = None) -> list[DeadLetterRecord]:
    out = []
    for rec in read_topic(settings, topic_name(settings, DEAD_LETTERS)):
        letter = DeadLetter.model_validate_json(rec.value or b"{}")
        if reason is None or letter.reason == reason:
            out.append(DeadLetterRecord(rec.offset, letter))
    return out


def replay_dead_letters(settings: Settings, letters: list[DeadLetterRecord]) -> int:
    """Produce each original record again to its source topic (same key, original bytes)."""
    writer = Writer(settings)
    for item in letters:
        key = base64.b64decode(item.letter.source_key_b64) if item.letter.source_key_b64 else None
        writer.write(item.letter.source_topic, key=key, value=item.letter.original_value(),
                     headers=[("replayed_from_dead_letter", str(item.offset).encode())])
    writer.finish()
    return writer.delivered


# --- consumer groups ----------------------------------------------------------------------------


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed if self.committed is not None and self.committed >= 0
                           else 0)


def group_ids(settings: Settings) -> list[str]:
    adm = admin(settings)  # keep the client alive until its futures resolve
    result = adm.list_consumer_groups(request_timeout=10).result()
    return sorted(g.group_id for g in result.valid if not g.group_id.startswith("socialproof-ops-"))


def group_lag(settings: Settings, group: str, topics: list[str] | None = None
              ) -> list[PartitionLag]:
    adm = admin(settings)
    futures = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                              request_timeout=10)
    committed = futures[group].result().topic_partitions or []
    by_topic: dict[str, dict[int, int]] = {}
    for tp in committed:
        by_topic.setdefault(tp.topic, {})[tp.partition] = tp.offset
    rows = []
    for topic in sorted(topics or by_topic):
        ends = true_end_offsets(settings, topic)
        for p, end in sorted(ends.items()):
            rows.append(PartitionLag(topic, p, by_topic.get(topic, {}).get(p), end))
    return rows


def group_is_active(settings: Settings, group: str) -> bool:
    adm = admin(settings)  # keep the client alive until its futures resolve
    desc = adm.describe_consumer_groups([group], request_timeout=10)[group].result()
    return bool(desc.members)


def reset_group(settings: Settings, group: str, topics: list[str],
                to: str | datetime) -> list[TopicPartition]:
    """Move a group's committed offsets (the group must have no active member)."""
    if group_is_active(settings, group):
        raise OpsError(f"group {group!r} has active members: stop its consumers first")
    consumer = reader(settings)
    try:
        targets: list[TopicPartition] = []
        for topic in topics:
            parts = partitions_of(consumer, topic)
            if to == "earliest":
                offsets = {p: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                             timeout=10)[0] for p in parts}
            elif to == "latest":
                offsets = true_end_offsets(settings, topic)
            elif isinstance(to, datetime):
                offsets = _start_offsets(consumer, topic, parts, to)
            else:
                raise OpsError(f"--to must be earliest, latest or a time, not {to!r}")
            targets += [TopicPartition(topic, p, o) for p, o in offsets.items()]
    finally:
        consumer.close()
    adm = admin(settings)  # keep the client alive until its futures resolve
    result = adm.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, targets)], request_timeout=10)
    result[group].result()
    return targets
