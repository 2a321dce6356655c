"""Kafka clients shared by every service: an asyncio publisher over confluent-kafka, topic
creation from the contracts registry, and a reachability probe for ``/readyz``.

:func:`topic_name` is the one place a registry topic becomes a name on the broker
(``SOCIALPROOF_KAFKA_TOPIC_PREFIX`` + the registry name): every producer, consumer, admin call
and tool asks it, so one setting moves a whole deployment's topics.

The publisher is the only way services write events. ``await publisher.publish(event)`` returns
only after the broker acknowledged the record (``acks=all``, idempotent producer); if it does not
within ``produce_timeout_ms`` it raises :class:`PublishFailed`, which HTTP services turn into a 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from contracts import codec
from contracts.events import Event
from contracts.topics import ALL_TOPICS, BY_NAME, Topic, topic_for
from socialproof.metrics import EVENTS_PUBLISHED, PUBLISH_FAILURES
from socialproof.settings import Settings

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    """The broker did not acknowledge an event; nothing may be reported as accepted."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def topic_name(settings: Settings, topic: Topic) -> str:
    """The name of a registry topic on the broker for these settings: the deployment's prefix
    (``SOCIALPROOF_KAFKA_TOPIC_PREFIX``, empty by default) followed by the registry name.

    A prefix lets several environments (or a benchmark run) share one Kafka cluster without
    touching each other's topics. The Kubernetes manifests keep the registry names.
    """
    return settings.kafka_topic_prefix + topic.name


def registry_topic(settings: Settings, name: str) -> Topic | None:
    """The registry topic that broker topic ``name`` is under these settings, or None."""
    prefix = settings.kafka_topic_prefix
    return BY_NAME.get(name[len(prefix) :]) if name.startswith(prefix) else None


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


def producer_config(settings: Settings, client_id: str) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        # The whole budget for one record, retries included: after it the caller gets a 503.
        "message.timeout.ms": settings.produce_timeout_ms,
        "socket.timeout.ms": max(settings.produce_timeout_ms, 1000),
        "reconnect.backoff.max.ms": 1000,
        "message.max.bytes": 8 * 1024 * 1024,
    }


class EventPublisher:
    """An idempotent confluent-kafka producer with awaitable deliveries.

    A daemon thread polls for delivery reports and resolves asyncio futures on the caller's loop.

    An idempotent producer can end up unusable: a fatal error (librdkafka raises one when the
    broker refuses its producer id or epoch for good, e.g. after it bumped the epoch following
    requests that timed out while the broker was unreachable). The poll thread then replaces it
    with a fresh producer, so a service recovers from a broker outage without a restart. Records in flight on the old instance fail (the caller got
    or gets a 503) and are never reported as delivered.
    """

    REBUILD_MIN_INTERVAL_S = 1.0

    def __init__(self, settings: Settings, client_id: str) -> None:
        self._settings = settings
        self._config = producer_config(settings, client_id)
        self._config["error_cb"] = self._on_error
        self._client_id = client_id
        self._producer = Producer(self._config, logger=log)
        self._fatal = threading.Event()
        self._last_rebuild = 0.0
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"{client_id}-poll", daemon=True)
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:  # runs on the poll thread
        if err.fatal():
            log.error("producer hit a fatal error; replacing it", extra={"error": err.str()})
            self._fatal.set()
        elif err.code() != KafkaError._ALL_BROKERS_DOWN:
            log.debug("producer error", extra={"error": err.str()})

    def _poll(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.1)
            if (
                self._fatal.is_set()
                and time.monotonic() - self._last_rebuild > self.REBUILD_MIN_INTERVAL_S
            ):
                self._rebuild()

    def _rebuild(self) -> None:
        old = self._producer
        self._producer = Producer(self._config, logger=log)
        self._last_rebuild = time.monotonic()
        self._fatal.clear()
        # Fail what the dead instance still holds, so every waiting caller gets its answer.
        # purge() only marks the records: their delivery reports (_PURGE_QUEUE/_PURGE_INFLIGHT)
        # come from the instance's broker threads a moment later, so flush(0) straight after
        # serves few or none (measured: 0 of 50). Dropping the instance with reports unserved
        # left those callers waiting for ever: in a leader failover on the 3-broker cluster,
        # 16 of 375 publishes never returned and their HTTP requests hung. Serve them all
        # (measured: 3-6 ms); the message timeout bounds the wait.
        old.purge()
        old.flush(self._settings.produce_timeout_ms / 1000 + 1)
        log.warning("producer replaced after a fatal error", extra={"client_id": self._client_id})

    async def publish(self, event: Event, topic: Topic | None = None) -> Delivered:
        topic = topic or topic_for(event)
        if not topic.accepts(event):
            raise ValueError(f"{event.event_type} does not belong on {topic.name}")
        return await self.publish_raw(
            topic_name(self._settings, topic),
            key=topic.key_of(event).encode(),
            value=codec.encode(event),
            headers={"event_type": event.event_type, "event_id": str(event.event_id)},
            event_type=event.event_type,
        )

    async def publish_raw(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, str] | None = None,
        event_type: str = "raw",
        timestamp_ms: int | None = None,
    ) -> Delivered:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg) -> None:  # runs on the poll thread
            if err is not None and (err.fatal() or err.code() in _POISONED):
                self._fatal.set()
            if err is not None:
                outcome: Delivered | BaseException = PublishFailed(
                    f"{err.name()}: {err.str()}", retryable=err.retriable() or _is_timeout(err)
                )
            else:
                outcome = Delivered(msg.topic(), msg.partition(), msg.offset())
            loop.call_soon_threadsafe(_settle, future, outcome)

        kwargs: dict[str, object] = {"key": key, "value": value, "on_delivery": on_delivery}
        if headers:
            kwargs["headers"] = list(headers.items())
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        try:
            self._producer.produce(topic, **kwargs)
        except BufferError:
            PUBLISH_FAILURES.labels(topic, "queue_full").inc()
            raise PublishFailed("producer queue is full") from None
        except KafkaException as exc:
            PUBLISH_FAILURES.labels(topic, "produce_error").inc()
            raise PublishFailed(str(exc), retryable=False) from None
        try:
            delivered = await future
        except PublishFailed as exc:
            PUBLISH_FAILURES.labels(topic, "not_acknowledged").inc()
            log.warning("publish failed", extra={"topic": topic, "error": exc.reason})
            raise
        EVENTS_PUBLISHED.labels(topic, event_type).inc()
        return delivered

    def flush(self, timeout: float = 10.0) -> int:
        return self._producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            log.error("records not delivered at shutdown", extra={"count": remaining})
        self._stopping.set()
        self._poller.join(timeout=2)


# Delivery errors after which this producer instance is replaced. Its producer id and epoch are
# refused for good after the first four; after a timeout, librdkafka must bump the epoch before
# the partition can take records again, which a broker that lost or never had that producer id
# (a restarted or replaced broker) may refuse for ever (measured: every record then times out).
# A new instance starts with a new producer id, which every broker accepts.
_POISONED = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError._FATAL,
    }
)


def _settle(future: asyncio.Future, outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _is_timeout(err: KafkaError) -> bool:
    return err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "socket.timeout.ms": 5000}
    )


def ensure_topics(
    settings: Settings, topics: Iterable[Topic] = ALL_TOPICS, timeout: float = 30.0
) -> list[str]:
    """Create the registry's topics that do not exist yet (under their :func:`topic_name`);
    returns the names it created.

    Existing topics are left alone (their partition count is checked and a mismatch logged).
    """
    admin = admin_client(settings)
    wanted = {topic_name(settings, t): t for t in topics}
    existing = admin.list_topics(timeout=timeout).topics
    missing = {name: t for name, t in wanted.items() if name not in existing}
    for name, t in wanted.items():
        meta = existing.get(name)
        if meta is not None and len(meta.partitions) != t.partitions:
            log.warning(
                "topic partition count differs from the registry",
                extra={"topic": name, "has": len(meta.partitions), "registry": t.partitions},
            )
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=t.partitions, replication_factor=-1, config=t.config)
            for name, t in missing.items()
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


class BrokerProbe:
    """Answers "is a broker reachable?" for ``/readyz`` with one long-lived admin client."""

    def __init__(self, settings: Settings) -> None:
        self._admin = admin_client(settings)

    async def check(self, timeout: float = 2.0) -> None:
        """Raise if no broker answers a metadata request within ``timeout`` seconds."""
        await asyncio.to_thread(self._admin.list_topics, timeout=timeout)
