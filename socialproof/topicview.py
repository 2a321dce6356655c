"""Materialising Kafka topics into a service's in-memory view: read from the beginning, then tail.

Kafka is the system of record; a service's view (products, orders, friendships…) is derived state
that :class:`TopicView` rebuilds on every start by reading its topics from offset 0, and then keeps
current by tailing them. It never joins a consumer group and never commits offsets: every replica
reads every partition.

Two questions the services ask of a view:

- **Has it caught up?** (``/readyz``) At start the view records each partition's high watermark
  ``hw``. A partition is caught up once the record at offset ``hw - 1``, the last one written,
  has been applied (the broker contract tests assert that ``hw`` is the last offset + 1). Most
  topics' writers are plain idempotent producers (one writer per topic, never transactional), so
  that offset is a record and never a transaction marker. :meth:`TopicView.sync` applies the same
  rule to the watermarks of *now*: "has the view seen everything written so far?" (orders uses it
  before calling a product unknown, because the product may have been created a moment ago).
- **Transactional topics** (``promotions.rewards``, written by the stream processor's relay in
  Kafka transactions): a view given an ``isolation`` level reads at that level (read_committed:
  never a record of an aborted transaction; the watermark is then the last stable offset) and
  also counts the consumer's position at the end of a partition (partition EOF) as applied, since
  such a partition ends with a commit marker, never a record, and aborted records are skipped.
- **Does it include my write?** (read-your-writes) After publishing, a handler awaits
  :meth:`TopicView.wait_applied` with the delivery report's partition and offset, so that the
  service's next answer already reflects the write, in log order with other replicas' writes.

Records are applied on the asyncio event loop (never on the consumer thread), so handlers see a
consistent view between two ``await``s without locks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from fastapi import FastAPI

from contracts.topics import Topic
from socialproof.http import ReadinessCheck, standard_lifespan
from socialproof.kafka import Delivered, topic_name
from socialproof.settings import Settings

log = logging.getLogger(__name__)

POLL_BATCH = 1000
#: longest a poll blocks (the broker answers a fetch as soon as records arrive, so this only
#: bounds how quickly the thread notices a stop)
POLL_TIMEOUT_S = 0.05

Isolation = Literal["read_committed", "read_uncommitted"]


@dataclass(frozen=True)
class Record:
    """One Kafka record as a view sees it (``value`` is None for a compaction tombstone)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def key_str(self) -> str | None:
        return None if self.key is None else self.key.decode(errors="replace")


@dataclass(frozen=True)
class PartitionEnd:
    """The consumer reached the end of a partition: every offset before ``offset`` was read
    (records applied, transaction markers and aborted records skipped). Only with an isolation
    level (the partition EOF event is off otherwise)."""

    topic: str
    partition: int
    offset: int


class ViewNotReady(RuntimeError):
    """Raised by :meth:`TopicView.check` while the view is still replaying its topics."""


class ViewUnavailable(RuntimeError):
    """Raised by :meth:`TopicView.sync` when the broker cannot say where the topics end."""


class TopicView:
    """Reads ``topics`` from the beginning into ``apply`` (called on the event loop), then tails.

    ``start()`` returns at once; replay runs in a background thread. ``check()`` is the readiness
    probe; ``wait_applied``/``wait_until`` let handlers wait (bounded) for the view to move on.

    ``isolation``: None (the default) leaves the client's own level and counts applied records
    only, right for topics whose writers never use transactions. A view over a transactional
    topic names the level (``read_committed`` for the processor's rewards) and then also counts
    a partition's end position (partition EOF) as applied, past the trailing commit marker.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[Topic],
        apply: Callable[[Record], None],
        *,
        name: str,
        isolation: Isolation | None = None,
    ) -> None:
        self._settings = settings
        self._isolation = isolation
        self._topics = [topic_name(settings, t) for t in topics]
        self._apply = apply
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._changed: asyncio.Future[None] | None = None
        #: (topic, partition) -> offset of the last record applied
        self._applied: dict[tuple[str, int], int] = {}
        #: (topic, partition) -> offset that must be applied before the view is caught up
        self._targets: dict[tuple[str, int], int] | None = None
        self._caught_up = False
        self._status = "starting"
        self.records_applied = 0
        self._offsets_client: Consumer | None = None
        self._offsets_lock = threading.Lock()
        self._assignment_list: list[TopicPartition] | None = None
        self._catching_up: asyncio.Future | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-view", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._catching_up is not None:
            self._catching_up.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    # --- what handlers use ----------------------------------------------------------------------

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    async def check(self) -> None:
        """Readiness: raise :class:`ViewNotReady` (with how far behind) until caught up."""
        if self._caught_up:
            return
        if self._targets is None:
            raise ViewNotReady(f"{self._name} view: {self._status}")
        behind = {
            f"{t}/{p}": target - self._applied.get((t, p), -1)
            for (t, p), target in self._targets.items()
            if self._applied.get((t, p), -1) < target
        }
        raise ViewNotReady(f"{self._name} view replaying; records behind per partition: {behind}")

    def applied_offset(self, topic: str, partition: int) -> int:
        return self._applied.get((topic, partition), -1)

    async def wait_applied(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the record at ``offset`` was applied; False if ``timeout`` ran out first."""
        return await self.wait_until(
            lambda: self._applied.get((topic, partition), -1) >= offset, timeout
        )

    async def wait_delivered(self, delivered: Delivered, timeout: float = 5.0) -> bool:
        """After a publish: wait until the view applied that record (read-your-writes)."""
        ok = await self.wait_applied(
            delivered.topic, delivered.partition, delivered.offset, timeout
        )
        if not ok:
            log.warning(
                "own write not visible in the view yet",
                extra={"view": self._name, "topic": delivered.topic, "offset": delivered.offset},
            )
        return ok

    async def sync(self, timeout: float) -> bool:
        """Wait until everything written to the topics so far is applied (False on timeout).

        Reads the current high watermarks and waits for the record at ``hw - 1`` of each
        partition.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._targets is None and not await self.wait_until(
            lambda: self._targets is not None, timeout
        ):
            return False
        try:
            targets = await asyncio.wait_for(
                asyncio.to_thread(self._end_offsets), max(deadline - loop.time(), 0.1)
            )
        except Exception as exc:  # the broker does not answer: the caller says 503, not "unknown"
            raise ViewUnavailable(f"cannot read the end of {self._topics}: {exc!r}") from exc
        return await self._reach(targets, deadline - loop.time())

    async def _reach(self, targets: dict[tuple[str, int], int], timeout: float) -> bool:
        return await self.wait_until(
            lambda: all(self._applied.get(tp, -1) >= off for tp, off in targets.items()), timeout
        )

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Re-check ``predicate`` after each applied batch until it holds or ``timeout`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0 or self._changed is None:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            except TimeoutError:
                return predicate()
        return True

    # --- the consumer thread --------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        # with an isolation level (transactional topics): that level, for the records and the
        # watermarks alike, and an event at each partition's end (see the class docstring)
        level = (
            {}
            if self._isolation is None
            else {"isolation.level": self._isolation, "enable.partition.eof": True}
        )
        return Consumer(
            {
                **level,
                "bootstrap.servers": self._settings.kafka_bootstrap_servers,
                # Required by the client, never joined or committed: the view assigns partitions.
                "group.id": f"socialproof-{self._name}-view-{uuid.uuid4().hex[:8]}",
                "client.id": f"{self._name}-view",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "socket.timeout.ms": 10_000,
                "reconnect.backoff.max.ms": 1000,
            },
            logger=log,
        )

    def _assignment(self, consumer: Consumer) -> list[TopicPartition]:
        """Every partition of every topic, from the beginning."""
        assignment: list[TopicPartition] = []
        metadata = consumer.list_topics(timeout=10)
        for name in self._topics:
            meta = metadata.topics.get(name)
            if meta is None or meta.error is not None or not meta.partitions:
                raise LookupError(f"topic {name} does not exist (yet)")
            assignment += [
                TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)
            ]
        return assignment

    def _end_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> offset of the last record written so far (``hw - 1``), for the
        non-empty partitions. Blocking: runs in a thread (the client is thread-safe)."""
        assert self._assignment_list is not None
        targets = {}
        # A second client: watermark queries on the polling consumer stall behind its fetches.
        with self._offsets_lock:
            if self._offsets_client is None:
                self._offsets_client = self._consumer()
            for tp in self._assignment_list:
                low, high = self._offsets_client.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=5, cached=False
                )
                if high > low:
                    targets[(tp.topic, tp.partition)] = high - 1
        return targets

    def _run(self) -> None:
        consumer = self._consumer()
        try:
            while not self._stopping.is_set():
                try:
                    self._assignment_list = self._assignment(consumer)
                    targets = self._end_offsets()
                    break
                except Exception as exc:  # broker not up or topics missing: keep trying
                    self._status = f"waiting for the broker/topics ({exc})"
                    log.warning(
                        "view cannot start yet", extra={"view": self._name, "error": str(exc)}
                    )
                    self._stopping.wait(1.0)
            else:
                return
            consumer.assign(self._assignment_list)
            self._call(self._set_targets, targets)
            while not self._stopping.is_set():
                # poll() returns as soon as one record is there (consume() would wait for a full
                # batch or the timeout); then take whatever else is already queued.
                first = consumer.poll(POLL_TIMEOUT_S)
                messages = [] if first is None else [first, *consumer.consume(POLL_BATCH, 0)]
                records: list[Record | PartitionEnd] = []
                for msg in messages:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            # in order with the records: everything before offset() was read
                            records.append(PartitionEnd(msg.topic(), msg.partition(), msg.offset()))
                        else:
                            log.warning(
                                "view fetch error", extra={"view": self._name, "error": str(err)}
                            )
                        continue
                    records.append(
                        Record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())
                    )
                if records:
                    self._call(self._deliver, records)
        finally:
            consumer.close()
            with self._offsets_lock:
                if self._offsets_client is not None:
                    self._offsets_client.close()
                    self._offsets_client = None

    def _call(self, fn: Callable, *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed during shutdown
            self._stopping.set()

    # --- on the event loop ----------------------------------------------------------------------

    def _set_targets(self, targets: dict[tuple[str, int], int]) -> None:
        self._targets = targets
        self._status = "replaying"
        log.info(
            "view replaying its topics",
            extra={"view": self._name, "records": sum(t + 1 for t in targets.values())},
        )
        self._catching_up = asyncio.ensure_future(self._catch_up(targets))
        self._notify()

    async def _catch_up(self, targets: dict[tuple[str, int], int]) -> None:
        while not await self._reach(targets, 3600):
            pass
        self._caught_up = True
        self._status = "caught up"
        log.info("view caught up", extra={"view": self._name, "records": self.records_applied})
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        if self._loop is not None:
            self._changed = self._loop.create_future()

    def _deliver(self, records: list[Record | PartitionEnd]) -> None:
        applied = 0
        for record in records:
            if isinstance(record, PartitionEnd):
                # past a commit marker or aborted records: nothing to apply, but caught up to it
                tp = (record.topic, record.partition)
                self._applied[tp] = max(self._applied.get(tp, -1), record.offset - 1)
                continue
            applied += 1
            try:
                self._apply(record)
            except Exception:  # one bad record must not stop the view
                log.exception(
                    "view could not apply a record",
                    extra={"view": self._name, "topic": record.topic, "offset": record.offset},
                )
            self._applied[(record.topic, record.partition)] = record.offset
        self.records_applied += applied
        self._notify()


# --- wiring into a service ------------------------------------------------------------------------


def lifespan_with_view(
    settings: Settings,
    service: str,
    build: Callable[[FastAPI], TopicView],
    *,
    redis: bool = True,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """:func:`socialproof.http.standard_lifespan` plus the service's view on ``app.state.view``,
    started (replay begins) before the first request and stopped after the last."""
    base = standard_lifespan(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with base(app):
            app.state.uses_redis = redis
            app.state.view = build(app)
            await app.state.view.start()
            try:
                yield
            finally:
                await app.state.view.stop()

    return lifespan


def view_readiness(app: FastAPI) -> dict[str, ReadinessCheck]:
    """Ready when the broker answers and the view caught up (plus Redis where the service uses it)."""
    checks: dict[str, ReadinessCheck] = {
        "kafka": app.state.broker.check,
        "view": app.state.view.check,
    }
    if app.state.uses_redis:
        checks["redis"] = app.state.redis.ping
    return checks
