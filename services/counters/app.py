"""The social-proof stream processor: a Faust worker that turns contract events into counters.

It consumes every event topic of the registry in batches, decodes each record (with the msgspec
Structs of :mod:`contracts.fastcodec` where they prove the contracts' verdict, else with the
contracts codec, whose verdict then counts), sends records it cannot use to the dead-letter topic (original bytes, reason, source
topic/partition/offset) and applies the rest to Redis through :class:`CounterStore`. Offsets are
committed only after a batch's Redis writes and dead letters are confirmed, so a crash replays the
batch, which the idempotent store absorbs (effectively-once, no Kafka transactions needed).

Consumption is :class:`BatchConsumer` (aiokafka ``getmany`` in the consumer group, a few batches in
flight so decoding overlaps Redis), hosted by Faust for the worker's lifecycle, web server and
signals; Faust's per-record stream costs more than the whole batch path (see the class), and the
per-event Faust agent is kept as ``make bench``'s baseline (``create_app(per_event=True)``).

State lives in Redis behind idempotent scripts, not in Faust tables under Faust's own
``processing_guarantee='exactly_once'``: measured on Apache Kafka 4.4.0 with transactions and a
correct watermark (``make bench``, scenario ``faust_eos``, :mod:`bench.faust_eos`; two full runs
on 2026-12-04, load average under 1). The same purchases, a tenth of them duplicated, went to
this worker and to a Faust exactly-once app counting distinct orders per product in
changelog-backed tables (a dedupe table, a repartition by product, a count table):

- throughput: 32,075 and 38,377 events/s here against 494 and 1,507 for Faust (65x, 25x), though
  the Faust app only counts while the worker keeps every view;
- correctness after 3 SIGKILLs mid-stream, each followed by a restart: the worker's counts
  equalled the oracle's in both runs (0 of 162 products wrong, every served view too). Faust's
  were wrong in both runs, in its live table and in its changelog alike: 58 and 25 products
  (totals 1,140 and 1,224 against 1,166). Faust 0.15.3 puts a record an agent sends into the
  transaction of the destination partition, commits the partitions' transactions one after the
  other, and acks a record only when the agent asks for the next one, so a table write can
  commit before the offset of the record that made it. A kill then splits what one event did:
  orders counted twice or never. During development a restarted Faust app also stopped taking
  up some partitions in 4 of about 18 short kill runs, alive, "ready" and logging nothing;
- recovery, restart to the first event applied: 6.1 s against 19.2 s (3.2x). Both wait about
  6 s for the group to drop the killed member (the bench's session timeout); Faust then spends
  about 13 s rebuilding tables, because under exactly-once its recovery ends only after two
  5-second waits for changelog records that never come (a changelog ends with a transaction
  marker).

Kafka transactions would add nothing here that the idempotent facts do not already give, and
Redis is what the notifier serves from anyway. The one output that must leave Redis exactly once,
reward transitions for ``promotions.rewards``, goes through an outbox stream and the reward relay
(:mod:`services.counters.relay`), a task of the worker that holds partition 0 of
``orders.events`` (checked every second; ``/readyz`` shows it under ``reward_relay``).

The same worker runs on one Redis and on a Redis Cluster: ``REDIS_URL`` may name any node of
a cluster, which the worker finds out by asking it (:class:`StoreConnection`,
``socialproof.redis.connect_store``; no setting), and the store then splits each batch into one
script call per shard (``contracts/layout.py``, ``CounterStore``'s router). A batch's offsets are
committed only once every shard's calls of every chunk are confirmed (:meth:`BatchProcessor.handle`
gathers them all). MOVED/ASK, TRYAGAIN, CLUSTERDOWN and an unreachable master are retried by the
cluster client until its failover deadline (10 s); then the batch fails and is retried whole
(:func:`_with_retry`), its offsets uncommitted meanwhile, so lag grows and nothing is dropped;
the calls that had succeeded are applied again, which the idempotent facts absorb. Measured in
tests/integration/test_processor_cluster.py with a 0.5 s deadline: a master SIGKILLed under the
batches, 6-9 failed batch attempts, every event committed 4.3-5.0 s after the kill and the state
equal, key for key, to the same events applied without a failure.

Run: ``socialproof worker`` (any number of replicas; they share partitions via the consumer group
``SOCIALPROOF_WORKER_CONSUMER_GROUP``, state in ``SOCIALPROOF_REDIS_NAMESPACE``). Health,
readiness (with ``assigned_partitions``) and metrics are served by Faust's web server on
``SOCIALPROOF_WORKER_WEB_PORT`` (default 6066).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import Any

import faust
from faust.app.base import BootStrategy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisError

from contracts import codec
from contracts.fastcodec import decode as fast_decode
from contracts.topics import DEAD_LETTERS, PROCESSOR_TOPICS, DeadLetter
from services.counters.relay import RewardRelay, owns_partition_zero
from services.counters.settings import CountersSettings
from services.counters.store import Changes, CounterStore, fan_out, operation
from socialproof import logs
from socialproof import redis as redis_client
from socialproof.gctune import tune_gc
from socialproof.kafka import BrokerProbe, EventPublisher, topic_name
from socialproof.metrics import BATCH_LATENCY, EVENTS_PROCESSED, PIPELINE_STAGE, PROCESSOR_LAG
from socialproof.metrics import DEAD_LETTERS as DEAD_LETTER_COUNT

log = logging.getLogger("socialproof.processor")

#: the worker's stages of ``socialproof_pipeline_stage_seconds`` (see socialproof.metrics)
FETCH_WAIT = PIPELINE_STAGE.labels("fetch_wait")
BATCH_WAIT = PIPELINE_STAGE.labels("batch")
REDIS_APPLY = PIPELINE_STAGE.labels("redis")
ANNOUNCE = PIPELINE_STAGE.labels("announce")

#: longest a stopping worker waits for its batch in flight (the pod's grace period is longer)
STOP_GRACE_S = 20.0

#: operations per store call within a batch and shard (Redis applies one chunk while Python
#: decodes the next): a chunk of a layout of n shards holds events routed to ~n x 250 shard
#: operations, so each shard's script call carries ~250 again (cut at 250 events of the
#: batch, every shard's call of a 13-shard layout carried ~20: the writers' CPU went from
#: 1.2-1.6 to 10.7-13.3 us/event and the busiest master's Redis CPU per event was 0.49-0.53 of
#: one node's instead of 0.41-0.44; bench/results/cluster-scaling.md)
APPLY_CHUNK = 250

#: chunks whose script calls may be out at once on a one-shard layout, across the batches in
#: flight (32 x 250 events: far more than keeps Redis busy while Python decodes, and more than a
#: worker sent at once before #16, 20 a batch); a layout of n shards gets CHUNKS_IN_REDIS // n,
#: at least 2, because a chunk of user facts is a call to every shard, each as long as the whole
#: chunk on one shard. So a call does not queue behind more work than the client's socket timeout
#: (2 s) and the calls stay under the pool's max_connections (256 a node). Unbounded, a chunk of a
#: sharded layout became a call per shard: 260 calls for a 5,000-event batch on 12+1 shards, 780
#: with 3 batches in flight, and on one Redis holding 12 shards a batch of friendships (250 of
#: them: 90-350 ms of scripts over the 13 shards) failed with MaxConnectionsError or 2 s timeouts,
#: again on every retry.
CHUNKS_IN_REDIS = 32

#: fetched batches being handled at once besides the newest: Redis always has a batch's scripts
#: queued while Python decodes the next, also while a batch's offsets are being committed.
#: Commits stay in batch order.
IN_FLIGHT = 2


class BatchProcessor:
    """Decode → dead-letter the unusable → apply to Redis → announce. Independent of Faust."""

    def __init__(
        self,
        store: CounterStore,
        dead_letters: EventPublisher,
        consumer: str,
        dead_letter_topic: str,
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.consumer = consumer
        self.dead_letter_topic = dead_letter_topic  # its name on the broker (topic_name)
        #: chunks whose script calls are out at once, across the batches in flight, for the
        #: shard count of the namespace served (CHUNKS_IN_REDIS)
        self._in_redis: asyncio.Semaphore | None = None
        self._bound_for: int | None = None

    async def handle(self, records: list[Any], fetched_at: float | None = None) -> None:
        """``records`` are Kafka records with topic, partition, offset, key and value.

        Decoding (Python) and applying (Redis, another core) overlap: each chunk of decoded events
        is sent to Redis at once and the next chunk is decoded while Redis runs the script. The
        chunks may then run in any order, which the store allows (its facts commute). The batch
        is done, and its offsets may be committed, only when every chunk and dead letter is
        confirmed; a failure fails the whole batch, which is retried (idempotently).
        """
        started = time.perf_counter()
        if fetched_at is not None:  # time.time() when the consumer got the records
            BATCH_WAIT.observe(max(0.0, time.time() - fetched_at))
        # Resolved once per batch: after a switch the next batch goes to the new namespace; during
        # a rebuild's hand-over every batch also goes to the shadow (idempotent, so harmless).
        written = await self.store.targets()
        layout = await self.store.layout(written[0])
        shards = layout.shards
        chunk_work = APPLY_CHUNK * len(layout.prefixes)  # shard operations a chunk is cut at
        work = 0
        if shards != self._bound_for:  # the first batch, or a switch to another layout
            self._in_redis = asyncio.Semaphore(max(2, CHUNKS_IN_REDIS // shards))
            self._bound_for = shards
        chunk: list[list] = []
        applying: list[asyncio.Future] = []
        pending_dead: list[asyncio.Future] = []
        counts: Counter[tuple[str, str]] = Counter()
        for msg in records:
            value = msg.value
            if value is None:
                continue  # a compaction tombstone (product deleted): nothing to count
            # The fast Structs where they prove pydantic's verdict (contracts.fastcodec); any
            # record they do not accept gets pydantic's verdict, dead-letter reason included.
            event = fast_decode(value)
            if event is None:
                try:
                    event = codec.decode(value)
                except codec.EventDecodeError as exc:
                    pending_dead.append(asyncio.ensure_future(self._dead_letter(msg, exc)))
                    continue
            counts[(msg.topic, event.event_type)] += 1
            op = operation(event)
            if op is None:
                continue  # an event no counter depends on (a product deleted)
            chunk.append(op)
            work += fan_out(op, layout)
            if work >= chunk_work:
                applying += self._apply(chunk, written)
                chunk, work = [], 0
                await asyncio.sleep(0)  # let the chunk go out before decoding the next one
        if chunk:
            applying += self._apply(chunk, written)
        # Offsets move on only once every write and dead letter is confirmed: nothing is lost.
        outcomes = await asyncio.gather(*applying, *pending_dead, return_exceptions=True)
        applied = time.perf_counter()
        REDIS_APPLY.observe(applied - started)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]
        changed = Changes()
        for outcome in outcomes[: len(applying)]:
            changed |= outcome
        # On a cluster, the writes must be on a replica too before the offsets move: a master
        # that dies before replicating them would take them along (CounterStore.confirm_replicated)
        await self.store.confirm_replicated(changed)
        if self.store.follow_active:  # a rebuild's replay worker has no readers to tell
            await self.store.announce(changed)
            ANNOUNCE.observe(time.perf_counter() - applied)
        for (topic, event_type), n in counts.items():
            EVENTS_PROCESSED.labels(topic, event_type).inc(n)
        BATCH_LATENCY.observe(time.perf_counter() - started)

    def _apply(self, ops: list[list], written: tuple[str, ...]) -> list[asyncio.Future]:
        # Reward transitions go to the outbox from the writes to the namespace readers serve as
        # of this batch (written[0]), so a switch while batches are in flight cannot drop one.
        return [
            asyncio.ensure_future(
                self._bounded(ops, ns, self.store.follow_active and ns == written[0])
            )
            for ns in written
        ]

    async def _bounded(self, ops: list[list], namespace: str, emit: bool) -> Changes:
        """One chunk's script calls, once fewer than :data:`CHUNKS_IN_REDIS` chunks are."""
        assert self._in_redis is not None  # made by handle()
        async with self._in_redis:
            return await self.store.apply_operations(ops, namespace, emit=emit)

    async def _dead_letter(self, msg: Any, exc: codec.EventDecodeError) -> None:
        letter = DeadLetter(
            source_topic=msg.topic,
            source_partition=msg.partition,
            source_offset=msg.offset,
            source_key_b64=DeadLetter.b64(msg.key),
            value_b64=DeadLetter.b64(msg.value),
            reason=exc.reason,
            error=exc.detail,
            consumer=self.consumer,
        )
        log.warning(
            "dead-lettered a record",
            extra={
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "reason": exc.reason,
                "error": exc.detail[:300],
            },
        )
        await self.dead_letters.publish_raw(
            self.dead_letter_topic,
            key=f"{msg.topic}/{msg.partition}/{msg.offset}".encode(),
            value=letter.model_dump_json().encode(),
            headers={"reason": exc.reason, "source_topic": msg.topic},
            event_type="dead_letter",
        )
        DEAD_LETTER_COUNT.labels(msg.topic, exc.reason).inc()


class BatchConsumer:
    """The worker's consumer: whole fetches of records in, one ``handle`` per batch, offsets
    committed only after it succeeded.

    Why not a Faust stream (``stream.take_events``): Faust's per-record stream machinery
    (conductor, channels, event objects, per-event acks) costs ~150 us per record on this
    machine, capping a worker near 5,000 events/s however cheap the Redis side is, while aiokafka's
    ``getmany`` hands over thousands of records per call. Faust still hosts the worker
    (lifecycle, signals, web server, ``/readyz``, ``/metrics``); the per-event Faust agent survives
    as ``make bench``'s baseline. The group protocol is Kafka's own, so any number of replicas
    share partitions; a rebalance or crash between apply and commit redelivers a batch, which the
    idempotent store absorbs.
    """

    def __init__(self, settings: CountersSettings, processor: BatchProcessor) -> None:
        self.settings = settings
        self.processor = processor
        self.consumer: Any = None

    def assignment(self) -> set:
        return set(self.consumer.assignment()) if self.consumer is not None else set()

    async def run(self) -> None:
        """Consume until cancelled; if the consumer itself fails (e.g. no broker at start-up),
        start a new one with backoff rather than leave a worker that looks alive but is idle."""
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - started > 60:
                    delay = 0.5
                log.error(
                    "consumer failed; restarting",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer

        s = self.settings
        self.consumer = consumer = AIOKafkaConsumer(
            *(topic_name(s, t) for t in PROCESSOR_TOPICS),
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.worker_consumer_group,
            client_id=f"{s.worker_consumer_group}-worker",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            # room for a dead-letter candidate larger than the 1 MiB event limit
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=s.worker_fetch_max_wait_ms,
        )
        await consumer.start()
        # Batches in flight (IN_FLIGHT): while Redis applies batch N, N+1 is fetched and decoded.
        # Offsets of a batch are committed only after its handle() succeeded, in order.
        pending: deque[tuple[asyncio.Task, dict]] = deque()
        try:
            while True:
                fetched = await consumer.getmany(
                    timeout_ms=int(s.worker_batch_within_s * 1000),
                    max_records=s.worker_batch_size,
                )
                fetched_at = time.time()
                records = [record for batch in fetched.values() for record in batch]
                if records:
                    oldest = min(batch[0].timestamp for batch in fetched.values() if batch)
                    if oldest > 0:  # -1: no timestamp (pre-0.10 message format)
                        FETCH_WAIT.observe(max(0.0, fetched_at - oldest / 1000))
                    task = asyncio.ensure_future(
                        _with_retry(self.processor.handle, records, fetched_at)
                    )
                    offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
                    pending.append((task, offsets, _newest_timestamp_ms(fetched)))
                # keep IN_FLIGHT batches going while busy; settle everything when idle
                while len(pending) > (IN_FLIGHT if records else 0):
                    await self._finish(consumer, *pending[0])
                    pending.popleft()
                if not records and not pending:
                    PROCESSOR_LAG.set(0)  # caught up: nothing new within the fetch wait
        finally:
            # A stop (SIGTERM, rolling upgrade) lets the batches in flight finish and commit, so
            # the next owner of the partitions does not replay them; a second cancel, a failure
            # or STOP_GRACE_S cuts that short, which loses nothing (the batch is replayed).
            try:
                for task, offsets, _ in pending:
                    await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
                    await consumer.commit(offsets)
            except BaseException as exc:  # noqa: BLE001 — stopping anyway; the log says why
                log.warning(
                    "stopped before the batch in flight was committed",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
                for task, _, _ in pending:
                    task.cancel()
            self.consumer = None
            await consumer.stop()

    @staticmethod
    async def _finish(consumer: Any, task: asyncio.Task, offsets: dict, newest_ms: int) -> None:
        from aiokafka.errors import CommitFailedError, KafkaError

        await task
        if newest_ms > 0:  # -1: a record without a timestamp (pre-0.10 message format)
            # The batch is in Redis: storefronts now see events up to its newest record.
            PROCESSOR_LAG.set(max(0.0, time.time() - newest_ms / 1000))
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: their new owner replays the batch (idempotently).
            log.warning("offset commit failed", extra={"error": str(exc)})


def _newest_timestamp_ms(fetched: dict) -> int:
    """The newest Kafka timestamp (ms) in a fetch: a partition's last record is its newest (to
    within its producers' clocks: they stamp records as they send them), one look a partition."""
    return max(batch[-1].timestamp for batch in fetched.values() if batch)


class StoreConnection:
    """The worker's client of the serving store, made once inside the worker's event loop by
    :func:`socialproof.redis.connect_store`: redis-py's cluster client when ``REDIS_URL`` names
    a Redis Cluster node, the plain client otherwise (asked of the node, no setting). Until the
    node answers, it asks again with a backoff (a worker may start before Redis), and
    ``/readyz`` says Redis is failing; a URL a cluster cannot serve (another database than 0)
    stops the worker with the error saying so."""

    def __init__(
        self,
        settings: CountersSettings,
        failover_deadline: float = redis_client.DEFAULT_FAILOVER_DEADLINE_S,
    ) -> None:
        self.settings = settings
        self.failover_deadline = failover_deadline
        self.redis: Any = None
        self._connecting: asyncio.Future | None = None

    async def get(self) -> Any:
        if self.redis is None:
            if self._connecting is None or (
                self._connecting.done() and self._connecting.exception() is not None
            ):
                self._connecting = asyncio.ensure_future(self._connect())
            await asyncio.shield(self._connecting)
        return self.redis

    async def _connect(self) -> None:
        delay = 0.5
        while True:
            try:
                redis = await redis_client.connect_store(
                    self.settings, failover_deadline=self.failover_deadline
                )
            except (RedisError, OSError) as exc:
                log.error(
                    "Redis does not answer; asking again",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.redis = redis
            log.info(
                "serving store connected",
                extra={
                    "redis_cluster": isinstance(redis, AsyncRedisCluster),
                    "redis_url": self.settings.redis_url,
                },
            )
            return

    async def ping(self) -> None:
        if self.redis is None:
            raise ConnectionError(f"not connected to {self.settings.redis_url} yet")
        await self.redis.ping()

    async def aclose(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.redis is not None:
            await self.redis.aclose()


class _WebOnlyBoot(BootStrategy):
    """Faust hosts the worker (lifecycle, web, sensors) without its own Kafka clients."""

    enable_kafka = False


class _ProcessorApp(faust.App):
    """Faust's app, closing socialproof's clients after Faust has stopped consuming."""

    closing_resources: list[Any]

    async def on_stop(self) -> None:
        await super().on_stop()
        for close in getattr(self, "closing_resources", []):
            result = close()
            if asyncio.iscoroutine(result):
                await result


def create_app(settings: CountersSettings, per_event: bool = False) -> faust.App:
    """Build the Faust app; nothing connects until the worker starts.

    ``per_event=True`` builds the *baseline* used only by ``make bench``: each event is applied
    with its own awaited Redis call, the way Faust's examples do, to show what batching buys.
    """
    brokers = [
        f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")
    ]
    app = _ProcessorApp(
        settings.worker_consumer_group,
        broker=brokers,
        store="memory://",
        autodiscover=False,
        web_enabled=True,
        web_bind=settings.host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        topic_disable_leader=True,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(
        *(topic_name(settings, t) for t in PROCESSOR_TOPICS),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        # The registry's topics are created by the platform (dev stack, KafkaTopic resources).
        internal=False,
    )
    # Nothing connects here: the serving store's client is made inside the worker's event loop
    # (StoreConnection), by asking the node REDIS_URL names whether it is a cluster node.
    connection = StoreConnection(settings)
    publisher = EventPublisher(settings, client_id="social-processor")
    broker = BrokerProbe(settings)
    processor = BatchProcessor(
        None,  # type: ignore[arg-type]  # the CounterStore, once connected (connected() below)
        publisher,
        consumer=settings.worker_consumer_group,
        dead_letter_topic=topic_name(settings, DEAD_LETTERS),
    )
    batches = BatchConsumer(settings, processor)
    # The reward relay (services/counters/relay.py) runs in the worker holding orders.events
    # partition 0, not in a rebuild's replay worker (it writes no outbox) nor the bench baseline.
    relaying = settings.worker_follow_active and not per_event
    relay = RewardRelay(settings, None) if relaying else None

    async def connected() -> None:
        """The store (and the relay's client) on the worker's loop, once: every task awaits it
        before its first Redis call."""
        redis = await connection.get()
        if processor.store is None:
            processor.store = CounterStore(
                redis,
                settings.redis_namespace,
                settings.default_share_purchases,
                follow_active=settings.worker_follow_active,
                fanout_at=settings.worker_friends_fanout_at,
                coupon_secret=settings.coupon_key(),
            )
        if relay is not None:
            relay.redis = redis

    app.closing_resources = [  # type: ignore[attr-defined]
        # the relay first: it may still checkpoint in Redis while its producer closes
        *([relay.stop] if relay is not None else []),
        publisher.close,
        # the store's own connections to the masters (CounterStore.confirm_replicated), if any
        lambda: processor.store.close() if processor.store is not None else None,
        connection.aclose,
    ]
    if not per_event:
        # BatchConsumer is the group member: Faust's own consumer and producer stay off.
        app.boot_strategy = _WebOnlyBoot(app)
    if per_event:

        @app.agent(source, name="counters", concurrency=1)
        async def counters_per_event(stream: faust.StreamT) -> None:
            await connected()
            async for record in stream.events():
                await _with_retry(processor.handle, [record.message])

        def assigned() -> int:
            return len(app.consumer.assignment()) if app.consumer else 0

    else:

        @app.task
        async def counters() -> None:
            await connected()
            await batches.run()

        def assigned() -> int:
            return len(batches.assignment())

    if relay is not None:

        @app.task
        async def reward_relay() -> None:
            await connected()
            await relay.run(owns=lambda: owns_partition_zero(batches.assignment(), settings))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "service": "social-processor"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        checks: dict[str, str] = {}
        for name, check in (("kafka", broker.check), ("redis", connection.ping)):
            try:
                await asyncio.wait_for(check(), 3)
                checks[name] = "ok"
            except Exception as exc:  # readiness reports, never raises
                checks[name] = f"failing: {type(exc).__name__}: {exc}"[:300]
        assigned_partitions = assigned()
        ready = all(v == "ok" for v in checks.values())
        body = {
            "status": "ready" if ready else "not_ready",
            "checks": checks,
            "assigned_partitions": assigned_partitions,
        }
        if relay is not None:  # informative only: a worker that does not relay is as ready
            body["reward_relay"] = relay.status()
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp refuses a content type carrying a charset; prometheus' constant has one.
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app


async def _with_retry(handle: Any, batch: list[Any], *args: Any) -> None:
    """Retry a batch until it succeeds: a Redis or broker outage pauses consumption, it never
    skips events (skipping would commit offsets of events that were not applied)."""
    delay = 0.2
    while True:
        try:
            await handle(batch, *args)
            return
        except Exception as exc:
            log.error(
                "batch failed; retrying",
                extra={
                    "error": f"{type(exc).__name__}: {exc}",
                    "retry_in_s": delay,
                    "size": len(batch),
                },
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class _Worker(faust.Worker):
    """Faust's worker with socialproof's log format instead of Faust's own."""

    def __init__(self, app: faust.App, settings: CountersSettings) -> None:
        self._sp_settings = settings
        super().__init__(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)

    def _setup_logging(self) -> None:
        logs.configure(
            "social-processor", self._sp_settings.log_level, self._sp_settings.log_format
        )


def run_worker(settings: CountersSettings, per_event: bool = False) -> None:
    logs.configure("social-processor", settings.log_level, settings.log_format)
    app = create_app(settings, per_event=per_event)
    # Full collections re-scanning the start-up objects while a batch is alive cost more than the
    # decoding itself (see socialproof.gctune).
    tune_gc()
    _Worker(app, settings).execute_from_commandline()
