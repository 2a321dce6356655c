"""Broker contract tests: the Kafka semantics socialproof relies on, asserted against whatever
broker the suite runs on (the embedded Apache Kafka by default, or KAFKA_BOOTSTRAP_SERVERS). No
test here is allowed an xfail: a broker that fails one is not a broker socialproof supports.

Each test uses its own fresh topic, so they are independent of each other and of the services.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.backends import Backend
from tests.support.waiting import wait_for

pytestmark = pytest.mark.broker_contract


@pytest.fixture
def admin(backend: Backend) -> AdminClient:
    return AdminClient({"bootstrap.servers": backend.bootstrap})


@pytest.fixture
def topic(admin: AdminClient) -> str:
    name = f"contract-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(10)
    wait_for(lambda: name in admin.list_topics(timeout=5).topics, 10, f"topic {name}")
    return name


def producer(backend: Backend, **extra: object) -> Producer:
    return Producer(
        {"bootstrap.servers": backend.bootstrap, "acks": "all", "enable.idempotence": True,
         "linger.ms": 5, **extra}
    )


def consumer(backend: Backend, group: str, **extra: object) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": backend.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            **extra,
        }
    )


def consume(c: Consumer, count: int, timeout: float = 30.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        got.append(msg)
    assert len(got) == count, f"consumed {len(got)} of {count} records within {timeout}s"
    return got


def produce_all(p: Producer, topic: str, records: list[tuple[bytes | None, bytes | None]],
                **kwargs: object) -> list:
    delivered: list = []
    errors: list = []

    def report(err, msg) -> None:
        (errors if err else delivered).append(err or msg)

    for key, value in records:
        p.produce(topic, key=key, value=value, on_delivery=report, **kwargs)
    assert p.flush(15) == 0
    assert errors == []
    return delivered


def test_records_with_one_key_land_on_one_partition_in_order(backend: Backend, topic: str) -> None:
    delivered = produce_all(
        producer(backend), topic, [(f"k{i % 4}".encode(), str(i).encode()) for i in range(40)]
    )
    by_key: dict[bytes, set[int]] = {}
    for msg in delivered:
        by_key.setdefault(msg.key(), set()).add(msg.partition())
    assert all(len(parts) == 1 for parts in by_key.values())
    c = consumer(backend, f"g-{uuid.uuid4().hex[:6]}")
    c.subscribe([topic])
    got = consume(c, 40)
    c.close()
    for key in by_key:
        values = [int(m.value()) for m in got if m.key() == key]
        assert values == sorted(values), "records of one key must arrive in produce order"


def test_a_consumer_group_resumes_from_its_committed_offsets(backend: Backend, topic: str) -> None:
    produce_all(producer(backend), topic, [(b"same-key", str(i).encode()) for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    first = consumer(backend, group)
    first.subscribe([topic])
    got = consume(first, 10)
    # commit only the first six
    sixth = got[5]
    first.commit(offsets=[TopicPartition(topic, sixth.partition(), sixth.offset() + 1)],
                 asynchronous=False)
    first.close()
    second = consumer(backend, group)
    second.subscribe([topic])
    rest = consume(second, 4)
    second.close()
    assert [int(m.value()) for m in rest] == [6, 7, 8, 9]


def test_keys_headers_timestamps_and_tombstones_survive_the_round_trip(
    backend: Backend, topic: str
) -> None:
    p = producer(backend)
    produce_all(p, topic, [(b"k1", b"v1")], headers=[("event_type", b"x.happened")],
                timestamp=1_700_000_000_123)
    produce_all(p, topic, [(b"k1", None)])  # a tombstone
    c = consumer(backend, f"g-{uuid.uuid4().hex[:6]}")
    c.subscribe([topic])
    got = consume(c, 2)
    c.close()
    first, tombstone = got
    assert first.key() == b"k1" and first.value() == b"v1"
    assert dict(first.headers()) == {"event_type": b"x.happened"}
    assert first.timestamp()[1] == 1_700_000_000_123
    assert tombstone.key() == b"k1" and tombstone.value() is None


def test_the_idempotent_producer_is_accepted_and_writes_each_record_once(
    backend: Backend, topic: str
) -> None:
    produce_all(producer(backend), topic, [(b"k", str(i).encode()) for i in range(200)])
    c = consumer(backend, f"g-{uuid.uuid4().hex[:6]}")
    c.subscribe([topic])
    got = consume(c, 200)
    extra = c.poll(1.0)  # absence can only be checked for a while: one more second
    c.close()
    assert extra is None or extra.error() is not None
    assert sorted(int(m.value()) for m in got) == list(range(200))


def test_a_consumer_group_with_kafkas_default_timings_delivers_within_seconds(
    backend: Backend, topic: str
) -> None:
    """The services and the worker use Kafka's default group timings (45 s session timeout): a
    new group's first member still gets its records at once (no initial rebalance delay)."""
    produce_all(producer(backend), topic, [(b"k", b"v")])
    c = consumer(backend, f"g-{uuid.uuid4().hex[:6]}",
                 **{"session.timeout.ms": 45_000, "heartbeat.interval.ms": 3_000})
    started = time.monotonic()
    c.subscribe([topic])
    consume(c, 1, timeout=15)
    c.close()
    assert time.monotonic() - started < 5


def test_a_group_rebalances_partitions_between_members_and_back_when_one_leaves(
    backend: Backend, topic: str
) -> None:
    """What the worker replicas rely on (aiokafka, as the worker consumes): two members of one
    group split the partitions without overlap; when one stops (LeaveGroup) the other takes all
    of them over and reads on from the committed offsets, losing and repeating nothing."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    produce_all(producer(backend), topic, [(str(i).encode(), str(i).encode()) for i in range(60)])
    group = f"g-{uuid.uuid4().hex[:6]}"

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(topic, bootstrap_servers=backend.bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)

    async def until(predicate, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"no {what} within {timeout}s"
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        a, b = member(), member()
        await a.start()
        await b.start()
        try:
            # Given two members of one group, each consuming and committing what it read
            seen: list[bytes] = []

            async def drain(c: AIOKafkaConsumer) -> None:
                for records in (await c.getmany(timeout_ms=200)).values():
                    seen.extend(r.value for r in records)
                await c.commit()

            await until(lambda: len(a.assignment()) + len(b.assignment()) == 3
                        and not (a.assignment() & b.assignment()), "split of 3 partitions")
            assert a.assignment() and b.assignment()
            for _ in range(5):
                await drain(a)
                await drain(b)
            # When one member leaves and more records arrive
            await b.stop()
            produce_all(producer(backend), topic,
                        [(str(i).encode(), str(i).encode()) for i in range(60, 90)])
            # Then the other holds every partition and reads everything, each record once
            await until(lambda: len(a.assignment()) == 3, "take-over of every partition")
            deadline = time.monotonic() + 20
            while len(seen) < 90 and time.monotonic() < deadline:
                await drain(a)
            assert sorted(int(v) for v in seen) == list(range(90))
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_the_high_watermark_is_the_last_offset_plus_one(backend: Backend, topic: str) -> None:
    p = producer(backend, **{"linger.ms": 50})
    for _ in range(2):  # two batches of ten records on one partition
        produce_all(p, topic, [(b"one-partition", b"x")] * 10)
    c = consumer(backend, f"g-{uuid.uuid4().hex[:6]}")
    tps = c.list_topics(topic, timeout=5).topics[topic].partitions
    highs = [c.get_watermark_offsets(TopicPartition(topic, pid), timeout=5)[1] for pid in tps]
    c.close()
    assert sorted(highs)[-1] == 20


def test_read_committed_consumers_see_only_committed_transactions(
    backend: Backend, topic: str
) -> None:
    """confluent-kafka's transactional producer (InitProducerId v4+)."""
    p = Producer({"bootstrap.servers": backend.bootstrap,
                  "transactional.id": f"tx-{uuid.uuid4().hex[:6]}"})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce(topic, key=b"k", value=b"aborted", partition=0)
    p.abort_transaction(10)
    p.begin_transaction()
    p.produce(topic, key=b"k", value=b"committed", partition=0)
    p.flush(10)
    c = consumer(backend, f"g-{uuid.uuid4().hex[:6]}", **{"isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, 0, 0)])
    assert c.poll(1.0) is None, "an open transaction must stay invisible"
    p.commit_transaction(10)
    got = consume(c, 1)
    c.close()
    assert [m.value() for m in got] == [b"committed"]


def test_aiokafka_transactions_as_faust_exactly_once_uses_them(
    backend: Backend, topic: str
) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def transact() -> None:
        p = AIOKafkaProducer(bootstrap_servers=backend.bootstrap,
                             transactional_id=f"tx-{uuid.uuid4().hex[:6]}")
        try:
            await asyncio.wait_for(p.start(), 20)
            async with p.transaction():
                await p.send_and_wait(topic, b"x")
        finally:
            await p.stop()

    asyncio.run(transact())
