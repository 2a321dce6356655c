"""The reward relay: publishes the reward transitions the processor's script appends to the
Redis stream ``{base}:rewards:outbox`` (fields in ``contracts.views``) to ``promotions.rewards``,
exactly once across crashes, restarts and overlapping relays. On a Redis Cluster the outbox, the
checkpoint and the emission counters are under ``{base}:{rw}`` instead
(``contracts.layout.outbox_prefix``: the referrals shard's slot, where the script deciding a
reward appends to the outbox), and the relay's commands go through the cluster client
(``socialproof.redis.connect_store``) like the worker's.

- **One transaction per batch.** Up to ``BATCH`` entries after the last published one go out in
  one Kafka transaction, a record each: key ``reward_id``, value the contract event
  (``contracts.codec``), ``event_id = uuid5(REWARD_EVENT_NAMESPACE, "{reward_id}#{seq}")``,
  ``occurred_at`` the entry's event time, header ``outbox-id`` = the stream entry id. After the
  commit: the checkpoint ``{base}:rewards:relay`` = {``id``: last entry, ``offset``: the topic's
  end after it}, and the stream trimmed up to ``id``.
- **Recovery on every (re)start.** ``init_transactions`` first: it fences any older producer with
  the same ``transactional.id`` (a zombie's later commit fails) and completes or aborts whatever
  transaction it left open. Then the topic is read ``read_committed`` from the checkpoint's
  offset to its end, and the published position becomes the greatest ``outbox-id`` found. So a
  crash between a commit and its checkpoint publishes nothing twice: the topic, not Redis, says
  what was published. A commit of unknown outcome (timeout, broker gone) is resolved the same
  way, never by publishing again blindly. A checkpoint written late by a fenced relay can only
  move *back* (to a transaction it committed before it was fenced), which recovery corrects.
- **Any error ends the session.** Broker or Redis down, a timeout, fencing: the producer is
  dropped, the relay backs off (up to ``BACKOFF_MAX_S``, no deadline) and starts a new session
  with recovery. Nothing is carried over, so there is nothing to get wrong.

Why confluent-kafka's ``Producer`` and not aiokafka's: fencing is the broker's (the epoch that
``InitProducerId`` bumps), so the client must offer an explicit, awaited "fence now" step before
the recovery read, and a clear failure after it. librdkafka has exactly that
(``init_transactions()``, the Java client's state machine, fenced = fatal error), and the project
already produces with it. aiokafka fetches its producer id lazily in its background sender
(``start()`` returns before anything is fenced; waiting for it needs a private attribute) and
ends that sender on ``ProducerFenced``. The cost is a thread: the calls block, so all of them
(init, transaction, recovery read, destroy) run on one thread of the relay's own, which also
serialises them (a producer is never destroyed while a commit on it is running).

Only the worker holding partition 0 of ``orders.events`` relays (:meth:`RewardRelay.run` with
``owns``). The ``transactional.id`` comes from the consumer group and the topic prefix
(:func:`transactional_id`): a second relay during a rebalance fences the first instead of
duplicating it, and tests with their own prefix or group never fence each other.

Run alone (operations, tests): ``python -m services.counters.relay`` with the worker's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from prometheus_client import Counter, Gauge
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts import codec
from contracts.events import (
    Event,
    RewardEarned,
    RewardEarnedPayload,
    RewardSpec,
    RewardWithdrawn,
    RewardWithdrawnPayload,
)
from contracts.layout import outbox_prefix
from contracts.topics import ORDERS, REWARDS
from contracts.views import Keys
from services.counters.settings import CountersSettings
from socialproof.kafka import producer_config, topic_name

log = logging.getLogger("socialproof.relay")

#: uuid5 namespace of reward event ids: ``uuid5(REWARD_EVENT_NAMESPACE, f"{reward_id}#{seq}")``.
#: Fixed for ever: consumers may rely on a transition keeping its event id.
REWARD_EVENT_NAMESPACE = uuid.UUID("5b0c7f3e-2a49-5d1e-9f4b-6c1d2e8a7f30")
#: the record header naming the outbox entry a record came from
OUTBOX_ID_HEADER = "outbox-id"
PRODUCER = "social-processor"

#: entries per transaction, and how long one XREAD waits for new entries
BATCH = 500
BLOCK_MS = 500
#: bounds of the blocking Kafka calls; a timeout ends the session (recovery resolves it)
INIT_TIMEOUT_S = 10.0
COMMIT_TIMEOUT_S = 10.0
RECOVERY_TIMEOUT_S = 30.0
#: an open transaction left by a relay that died is aborted by the broker after this (if no new
#: relay fenced it sooner); read_committed readers wait for it until then
TRANSACTION_TIMEOUT_MS = 30_000
#: how often a relay that does not own partition 0 looks again
OWNERSHIP_CHECK_S = 1.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0

RELAY_ACTIVE = Gauge(
    "socialproof_reward_relay_active", "1 while this worker relays reward transitions"
)
RELAY_PENDING = Gauge(
    "socialproof_reward_relay_pending",
    "Outbox entries not yet published to the reward topic (as this relay last saw them)",
)
RELAY_LAG = Gauge(
    "socialproof_reward_relay_lag_seconds",
    "Age of the oldest unpublished outbox entry (from its stream id); 0 when none",
)
RELAY_PUBLISHED = Counter(
    "socialproof_reward_relay_published_total",
    "Reward events committed to the reward topic",
    ["event_type"],
)
RELAY_FAILURES = Counter(
    "socialproof_reward_relay_failures_total",
    "Relay sessions ended by an error (each followed by a backoff and a recovery)",
)
RELAY_INVALID = Counter(
    "socialproof_reward_relay_invalid_total",
    "Outbox entries that make no valid event (a bug in the writer); logged and passed over",
)


def transactional_id(settings: CountersSettings) -> str:
    """The relay's ``transactional.id``: one per deployment (topic prefix + consumer group)."""
    return f"{settings.kafka_topic_prefix}{settings.worker_consumer_group}.rewards-relay"


def stream_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id ``ms-seq`` as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def after(entry_id: str) -> str:
    """The smallest stream id greater than ``entry_id`` (XTRIM MINID keeps ids >= it)."""
    ms, seq = stream_id(entry_id)
    return f"{ms}-{seq + 1}"


def reward_event(fields: dict[str, str]) -> Event:
    """The contract event of one outbox entry; raises (ValueError, KeyError) if it makes none."""
    reward_id, seq = fields["reward"], fields["seq"]
    envelope = {
        "event_id": uuid.uuid5(REWARD_EVENT_NAMESPACE, f"{reward_id}#{seq}"),
        "occurred_at": datetime.fromtimestamp(int(fields["ts"]) / 1000, UTC),
    }
    common = {
        "reward_id": reward_id,
        "promotion_id": fields["P"],
        "role": fields["role"],
        "user_id": fields["u"],
        "coupon": fields["coupon"],
    }
    kind = fields["type"]
    if kind == "earned":
        spec = RewardSpec(
            kind=fields["kind"], value=fields["value"], currency=fields.get("currency") or None
        )
        payload = RewardEarnedPayload(**common, reward=spec, buyers=int(fields.get("buyers", 0)))
        return RewardEarned.create(payload, producer=PRODUCER, **envelope)
    if kind == "withdrawn":
        payload = RewardWithdrawnPayload(**common, reason=fields["reason"])
        return RewardWithdrawn.create(payload, producer=PRODUCER, **envelope)
    raise ValueError(f"unknown outbox entry type {kind!r}")


@dataclass(frozen=True)
class Outgoing:
    entry_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, str]]
    event_type: str


@dataclass
class Committed:
    """What the reward topic holds: ``id`` the greatest outbox id published, ``offset`` the
    topic's end after it (where the next recovery read starts)."""

    id: str | None
    offset: int | None


def read_committed(
    settings: CountersSettings, start: int | None, timeout: float = RECOVERY_TIMEOUT_S
) -> tuple[list[tuple[int, dict[str, str]]], int]:
    """Blocking: every committed record of the reward topic from ``start`` (None: the beginning)
    to its end, as (offset, headers); and the end offset. Aborted records are never returned."""
    topic = topic_name(settings, REWARDS)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            # Required by the client, never joined or committed: the partition is assigned.
            "group.id": f"{transactional_id(settings)}-recovery-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # the end is reported with the first fetch that reaches it: do not let it wait
            "fetch.wait.max.ms": 10,
            "socket.timeout.ms": 10_000,
            "reconnect.backoff.max.ms": 1000,
        },
        logger=log,
    )
    records: list[tuple[int, dict[str, str]]] = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([KafkaPartition(topic, 0, OFFSET_BEGINNING if start is None else start)])
        while True:
            for msg in consumer.consume(1000, timeout=0.2):
                err = msg.error()
                if err is None:
                    headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
                    records.append((msg.offset(), headers))
                elif err.code() == KafkaError._PARTITION_EOF:
                    # read_committed: the end is the last stable offset, after which nothing is
                    # open once init_transactions has returned (this topic has one writer)
                    return records, msg.offset()
                else:
                    raise KafkaException(err)
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} to its end took over {timeout}s")
    finally:
        consumer.close()


class RewardRelay:
    """Publishes ``{base}:rewards:outbox`` to the reward topic; see the module docstring."""

    def __init__(self, settings: CountersSettings, redis: Any) -> None:
        self.settings = settings
        #: the serving store's client (``socialproof.redis.connect_store``); the worker sets it
        #: once connected, before :meth:`run`
        self.redis = redis
        self.topic = topic_name(settings, REWARDS)
        self.transactional_id = transactional_id(settings)
        # every blocking client call runs here, one at a time (see the module docstring)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="reward-relay")
        self._task: asyncio.Task | None = None
        self.position = Committed(None, None)
        self.state = "stopped"
        self.last_error: str | None = None
        self.pending: int | None = None
        self.lag_s: float | None = None

    @property
    def keys(self) -> Keys:
        """The outbox, checkpoint and emission keys: under the base namespace on one Redis,
        under the referrals shard's tag on a cluster (``contracts.layout.outbox_prefix``), in the
        slot of the script that appends to the outbox."""
        cluster = isinstance(self.redis, AsyncRedisCluster)
        return Keys(outbox_prefix(self.settings.redis_namespace, cluster))

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, owns: Callable[[], bool] = lambda: True) -> None:
        """Relay while ``owns()`` (checked between transactions, and every ``OWNERSHIP_CHECK_S``
        while not owning) until cancelled; errors end a session and start a new one."""
        self._task = asyncio.current_task()
        delay = BACKOFF_MIN_S
        try:
            while True:
                if not owns():
                    self._standby()
                    await asyncio.sleep(OWNERSHIP_CHECK_S)
                    continue
                try:
                    await self._session(owns)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    RELAY_FAILURES.inc()
                    if self.state == "relaying":  # it had recovered: a new outage starts short
                        delay = BACKOFF_MIN_S
                    self.state, self.last_error = "retrying", f"{type(exc).__name__}: {exc}"[:300]
                    log.error(
                        "reward relay failed; recovering",
                        extra={"error": self.last_error, "retry_in_s": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            self._standby("stopped")

    async def stop(self) -> None:
        """Cancel :meth:`run` and wait until its producer is destroyed (its thread finishes the
        call in progress first: bounded by the call timeouts)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._thread.shutdown(wait=False)

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: whether this process relays, how far, and what went wrong last."""
        return {
            "state": self.state,
            "transactional_id": self.transactional_id,
            "published_id": self.position.id,
            "pending": self.pending,
            "lag_s": self.lag_s,
            "last_error": self.last_error,
        }

    def _standby(self, state: str = "standby") -> None:
        if self.state == "relaying":
            log.info("reward relay stopped", extra={"state": state})
        self.state = state
        self.pending = self.lag_s = None
        RELAY_ACTIVE.set(0)
        RELAY_PENDING.set(0)
        RELAY_LAG.set(0)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # --- one session: fence, recover, relay -----------------------------------------------------

    async def _session(self, owns: Callable[[], bool]) -> None:
        """Until ``owns()`` turns false, or an error (raised)."""
        self.state = "starting"
        config = producer_config(self.settings, client_id=f"{PRODUCER}-rewards")
        config.update(
            {
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "linger.ms": 5,
            }
        )
        # held in a list so that the last reference is dropped on the relay's thread (_drop)
        held = [Producer(config, logger=log)]
        try:
            await self._call(held[0].init_transactions, INIT_TIMEOUT_S)
            await self._recover()
            self.state, self.last_error = "relaying", None
            RELAY_ACTIVE.set(1)
            log.info(
                "relaying reward transitions",
                extra={
                    "transactional_id": self.transactional_id,
                    "from_id": self.position.id,
                    "offset": self.position.offset,
                },
            )
            while owns():
                await self._step(held[0])
        finally:
            RELAY_ACTIVE.set(0)
            # after whatever call is still running on the thread
            await asyncio.shield(self._call(_drop, held))

    async def _recover(self) -> None:
        stored = await self.redis.hgetall(self.keys.rewards_relay)
        start = int(stored["offset"]) if stored.get("offset") else None
        records, end = await self._call(read_committed, self.settings, start)
        greatest = stored.get("id") or None
        for _, headers in records:
            found = headers.get(OUTBOX_ID_HEADER)
            if found and (greatest is None or stream_id(found) > stream_id(greatest)):
                greatest = found
        self.position = Committed(greatest, end)
        if greatest != (stored.get("id") or None):  # a commit whose checkpoint was lost
            log.info(
                "reward relay recovered its position from the topic",
                extra={"checkpoint": stored.get("id"), "published_id": greatest, "offset": end},
            )
        await self._checkpoint()

    async def _step(self, producer: Producer) -> None:
        """One XREAD; if it brought entries, one transaction, then the checkpoint."""
        outbox = self.keys.rewards_outbox
        answer = await self.redis.xread(
            {outbox: self.position.id or "0-0"}, count=BATCH, block=BLOCK_MS
        )
        entries = answer[0][1] if answer else []
        if not entries:
            producer.poll(0)  # serves librdkafka's log lines between transactions
            self._observe(0, None)
            return
        batch = [out for out in map(self._outgoing, entries) if out is not None]
        offset = self.position.offset
        if batch:
            offset = await self._call(self._transact, producer, batch)
            for out in batch:
                RELAY_PUBLISHED.labels(out.event_type).inc()
        self.position = Committed(entries[-1][0], offset)
        await self._checkpoint()

    def _outgoing(self, entry: tuple[str, dict[str, str]]) -> Outgoing | None:
        entry_id, fields = entry
        try:
            event = reward_event(fields)
        except (ValueError, KeyError, TypeError) as exc:
            RELAY_INVALID.inc()
            log.error(
                "outbox entry makes no reward event; passed over",
                extra={"entry_id": entry_id, "fields": fields, "error": str(exc)[:300]},
            )
            return None
        headers = [
            (OUTBOX_ID_HEADER, entry_id),
            ("event_type", event.event_type),
            ("event_id", str(event.event_id)),
        ]
        return Outgoing(
            entry_id, fields["reward"].encode(), codec.encode(event), headers, event.event_type
        )

    def _transact(self, producer: Producer, batch: list[Outgoing]) -> int:
        """On the relay's thread: one transaction with a record per entry; returns the topic's
        end after it (the last record's offset + 1)."""
        offsets: list[int] = []

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                offsets.append(msg.offset())

        producer.begin_transaction()
        for out in batch:
            producer.produce(
                self.topic,
                key=out.key,
                value=out.value,
                headers=out.headers,
                on_delivery=delivered,
            )
        self._commit(producer)
        return max(offsets) + 1

    def _commit(self, producer: Producer) -> None:
        """Seam for fault-injection tests (a zombie that stalls before committing)."""
        producer.commit_transaction(COMMIT_TIMEOUT_S)

    async def _checkpoint(self) -> None:
        """Store the position, trim what is published, and measure what is left (one round
        trip)."""
        published = self.position.id
        outbox = self.keys.rewards_outbox
        pipe = self.redis.pipeline(transaction=False)
        if published is not None:
            pipe.hset(
                self.keys.rewards_relay,
                mapping={"id": published, "offset": str(self.position.offset)},
            )
            pipe.xtrim(outbox, minid=after(published), approximate=False)
        pipe.xlen(outbox)
        pipe.xrange(outbox, min=after(published) if published else "-", count=1)
        *_, pending, oldest = await pipe.execute()
        self._observe(pending, oldest[0][0] if oldest else None)

    def _observe(self, pending: int, oldest_id: str | None) -> None:
        self.pending = pending
        self.lag_s = (
            0.0 if oldest_id is None else max(0.0, time.time() - stream_id(oldest_id)[0] / 1000)
        )
        RELAY_PENDING.set(pending)
        RELAY_LAG.set(self.lag_s)


def _drop(held: list[Producer]) -> None:
    """Destroy a producer without waiting for the broker: what it still queues is purged (never
    delivered after this); an open transaction is left to the next ``init_transactions``, which
    aborts it (or to the transaction timeout). Not ``close()``: with the broker unreachable and a
    transaction open, it blocks for ever (measured with librdkafka 2.16), even after an
    ``abort_transaction`` that timed out; destroying the instance takes milliseconds."""
    producer = held.pop()
    with contextlib.suppress(Exception):
        producer.purge()
    del producer  # the last reference: rd_kafka_destroy, here on the relay's thread


def owns_partition_zero(assignment: set, settings: CountersSettings) -> bool:
    """Whether a worker's assignment (aiokafka TopicPartitions) holds ``orders.events`` 0."""
    orders = topic_name(settings, ORDERS)
    return any(tp.topic == orders and tp.partition == 0 for tp in assignment)


async def main(relay_class: type[RewardRelay] = RewardRelay) -> None:
    """The relay alone, until SIGTERM/SIGINT (``python -m services.counters.relay``): for
    operations (a deployment whose workers run without it) and for the crash tests."""
    from socialproof import logs
    from socialproof import redis as redis_client

    settings = CountersSettings()
    logs.configure("reward-relay", settings.log_level, settings.log_format)
    redis = await redis_client.connect_store(settings)
    relay = relay_class(settings, redis)
    task = asyncio.ensure_future(relay.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await relay.stop()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
