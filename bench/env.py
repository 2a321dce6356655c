"""What a scenario runs against, and helpers.

Two backends, chosen by the environment (:func:`existing_servers`):

- **embedded** (default): a fresh Apache Kafka (one KRaft node) and redis-server on free ports for every scenario
  run, thrown away afterwards.
- **existing servers**: ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` both set. Safe on a shared
  cluster: every scenario run gets its own topics (``SOCIALPROOF_KAFKA_TOPIC_PREFIX`` =
  ``bench-<random>.``, passed to every process the bench starts), fresh Redis namespaces
  (:func:`new_namespace`) and consumer groups (:func:`group_for`); afterwards, also after a
  failure or Ctrl-C, it deletes exactly those topics, groups and the namespaces' keys (SCAN +
  UNLINK, never FLUSHDB). It never reads or writes anything else.

Helpers of :class:`BenchEnv`:

- ``produce(records)``: pre-encoded events straight to their topics, as fast as the idempotent
  producer goes; returns when the broker acknowledged every record.
- ``start_worker(namespace, per_event=False)``: a real ``socialproof worker`` process (or the
  per-event baseline) with its own namespace, consumer group and web port, ready once it holds
  partitions.
- ``processed(worker)``: the worker's ``socialproof_events_processed_total`` from ``/metrics``
  (``worker_metrics`` adds its own lag gauge).
- ``process_env(namespace)``: the environment any other socialproof process needs.

And :func:`notifier`: a real notifier process on the environment's servers, on a free port,
accepting the bench's service token :data:`TOKEN`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import redis as redis_sync
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from contracts import codec, namespaces
from contracts.events import Event
from contracts.topics import Topic, topic_for
from socialproof.kafka import admin_client, ensure_topics, producer_config, topic_name
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tools.devstack import (
    embedded_broker,
    redis_server,
    wait_for_broker,
    wait_for_redis,
    wait_ready,
    wait_worker_assigned,
)

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED = "embedded (Apache Kafka KRaft node + redis-server started by the bench)"
#: the service token of every service the bench starts (catalog, orders, notifier)
TOKEN = "bench-service-token-0123456789"

#: every namespace :func:`new_namespace` handed out in this process, in order; an environment
#: cleans up the ones made while it was open
_namespaces: list[str] = []


class BenchConfigError(RuntimeError):
    """The bench cannot run as configured; the message says what to change."""


def existing_servers(environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(bootstrap servers, Redis URL) when ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` are both
    set: run against them. None when neither is: the embedded backend. One without the other is
    an error: half a shared cluster and half an embedded one would measure neither."""
    bootstrap = environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    redis_url = environ.get("REDIS_URL", "").strip()
    if bootstrap and redis_url:
        return bootstrap, redis_url
    if bootstrap or redis_url:
        have, missing = (
            ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
            if bootstrap
            else ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")
        )
        raise BenchConfigError(
            f"{have} is set but {missing} is not: to run against existing servers set both; "
            "to use the embedded broker and redis-server unset both"
        )
    return None


def redis_url_for_display(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def describe_backend(servers: tuple[str, str] | None) -> str:
    """How the report names the backend."""
    if servers is None:
        return EMBEDDED
    bootstrap, redis_url = servers
    return f"existing servers: {bootstrap}, {redis_url_for_display(redis_url)}"


def encode_all(events: Iterable[Event]) -> list[tuple[Topic, bytes, bytes]]:
    """(registry topic, key, value) per event: encode before timing, so the clock sees only the
    system. Producers write each to ``topic_name(settings, topic)``."""
    out = []
    for event in events:
        topic = topic_for(event)
        out.append((topic, topic.key_of(event).encode(), codec.encode(event)))
    return out


def new_namespace() -> str:
    """A fresh Redis namespace; on existing servers its keys are deleted after the scenario."""
    namespace = f"b{uuid.uuid4().hex[:8]}"
    _namespaces.append(namespace)
    return namespace


def group_for(namespace: str) -> str:
    """The consumer group of the bench's worker writing ``namespace`` (deleted afterwards)."""
    return f"bench-{namespace}"


@dataclass
class Worker:
    proc: ManagedProcess
    url: str
    namespace: str


@dataclass
class BenchEnv:
    settings: Settings
    workdir: Path
    #: KAFKA_BOOTSTRAP_SERVERS/REDIS_URL were given: servers shared with others, so no
    #: server-wide commands (CONFIG RESETSTAT) and everything made is deleted afterwards
    existing: bool = False
    backend: str = EMBEDDED
    workers: list[Worker] = field(default_factory=list)

    def process_env(self, namespace: str) -> dict[str, str]:
        """The environment of a socialproof process the bench starts: this environment's servers
        and topics, ``namespace`` in Redis and its own consumer group."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "REDIS_URL": self.settings.redis_url,
            "SOCIALPROOF_KAFKA_TOPIC_PREFIX": self.settings.kafka_topic_prefix,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_WORKER_CONSUMER_GROUP": group_for(namespace),
            # Faust's data folder (empty for the worker) in the work folder, not the current one
            "FAUST_DATADIR": str(self.workdir / f"faust-{namespace}"),
        }

    def produce(
        self, records: list[tuple[Topic, bytes, bytes]], acked: list[int] | None = None
    ) -> float:
        """Produce and wait for every acknowledgement; returns the monotonic time of the last.
        ``acked[0]`` (if given) counts acknowledgements as they come, for another thread."""
        config = producer_config(self.settings, "bench")
        config.update(
            {"linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 2_000_000}
        )
        producer = Producer(config)
        failures: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                failures.append(str(err))
            elif acked is not None:
                acked[0] += 1

        names = {topic: topic_name(self.settings, topic) for topic, _, _ in records}
        for topic, key, value in records:
            while True:
                try:
                    producer.produce(names[topic], key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        remaining = producer.flush(120)
        done = time.monotonic()
        if remaining or failures:
            raise RuntimeError(f"{remaining} undelivered, {len(failures)} failed: {failures[:3]}")
        return done

    def start_worker(
        self, per_event: bool = False, namespace: str | None = None, batch_size: int | None = None
    ) -> Worker:
        namespace = namespace or new_namespace()
        port = free_port()
        env = {
            **self.process_env(namespace),
            "SOCIALPROOF_WORKER_WEB_PORT": str(port),
            "SOCIALPROOF_LOG_LEVEL": "WARNING",
        }
        if batch_size:
            env["SOCIALPROOF_WORKER_BATCH_SIZE"] = str(batch_size)
        argv = (
            [sys.executable, "-m", "bench.baseline_worker"]
            if per_event
            else [sys.executable, "-m", "cli", "worker"]
        )
        name = "baseline" if per_event else "worker"
        proc = ManagedProcess(
            name=name,
            argv=argv,
            env=env,
            cwd=str(ROOT),
            echo=False,
            log_path=self.workdir / f"{name}-{namespace}.log",
        ).start()
        url = f"http://127.0.0.1:{port}"
        worker = Worker(proc, url, namespace)
        self.workers.append(worker)
        wait_worker_assigned(f"{url}/readyz", 90, proc)
        return worker

    def stop_worker(self, worker: Worker) -> None:
        worker.proc.stop()
        self.workers.remove(worker)

    #: one client for every poll: ``httpx.get`` builds a new client, and its TLS context, each
    #: call (~27 ms of CPU, measured), which at the bench's polling rates took a large share of
    #: the 2 cores the measured processes need
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))

    def processed(self, worker: Worker) -> int:
        return self.worker_metrics(worker)[0]

    def worker_metrics(self, worker: Worker) -> tuple[int, float]:
        """(events applied, the worker's own ``socialproof_processor_lag_seconds``), one read."""
        text = self.http.get(f"{worker.url}/metrics").text
        total, lag = 0.0, 0.0
        for line in text.splitlines():
            if line.startswith("socialproof_events_processed_total{"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("socialproof_processor_lag_seconds "):
                lag = float(line.rsplit(" ", 1)[1])
        return int(total), lag

    def wait_processed(
        self, worker: Worker, target: int, timeout: float, interval: float = 0.05
    ) -> list[tuple[float, int]]:
        """Poll the worker's count until it reaches ``target``; returns (monotonic, count) samples."""
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker.proc.ensure_alive()
            count = self.processed(worker)
            samples.append((time.monotonic(), count))
            if count >= target:
                return samples
            time.sleep(interval)
        return samples


class Background:
    """Produces pre-encoded events at ``rate``/s from a thread (10 ms ticks) until done or
    ``stopped``."""

    def __init__(self, env: BenchEnv, records: list[tuple[Topic, bytes, bytes]]) -> None:
        config = producer_config(env.settings, "bench-e2e")
        config.update({"linger.ms": 2, "queue.buffering.max.messages": 1_000_000})
        self.producer = Producer(config)
        self.records = [(topic_name(env.settings, t), key, value) for t, key, value in records]
        self.cursor = 0
        self.failures: list[str] = []
        #: records acknowledged so far (read from other threads to follow progress)
        self.acked = 0
        #: set from another thread to end ``run`` early
        self.stopped = False

    def run(self, rate: float, seconds: float) -> int:
        """Produce ``rate * seconds`` records on schedule; returns how many were produced."""
        total = int(rate * seconds)
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        started = time.monotonic()
        made = 0
        while made < total and not self.stopped:
            delay = started + (made // per_tick) * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for _ in range(min(per_tick, total - made)):
                topic, key, value = self.records[self.cursor % len(self.records)]
                self.cursor += 1
                while True:
                    try:
                        self.producer.produce(topic, key=key, value=value, on_delivery=self._ack)
                        break
                    except BufferError:
                        self.producer.poll(0.01)
                made += 1
            self.producer.poll(0)
        self.producer.flush(60)
        return made

    def _ack(self, err, _msg) -> None:
        if err is not None:
            self.failures.append(str(err))
        else:
            self.acked += 1


@contextmanager
def notifier(env: BenchEnv, namespace: str, **extra: str) -> Iterator[tuple[str, int, int]]:
    """A real notifier process on a free port; yields (host, port, pid)."""
    port = free_port()
    proc = ManagedProcess(
        name="notifier",
        argv=service_argv("notifier"),
        env={
            "KAFKA_BOOTSTRAP_SERVERS": env.settings.kafka_bootstrap_servers,
            "REDIS_URL": env.settings.redis_url,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_SERVICE_TOKEN": TOKEN,
            "SOCIALPROOF_NOTIFIER_PORT": str(port),
            "SOCIALPROOF_LOG_LEVEL": "WARNING",
            # one client address makes all the load here: not what the rate limit is for
            "SOCIALPROOF_RATE_LIMIT_PER_S": "1000000000",
            "SOCIALPROOF_RATE_LIMIT_BURST": "1000000000",
            **extra,
        },
        echo=False,
        log_path=env.workdir / f"notifier-{port}.log",
    ).start()
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", 60, "the notifier", proc)
        assert proc.proc is not None
        yield "127.0.0.1", port, proc.proc.pid
    finally:
        proc.stop()


@contextmanager
def bench_env(servers: tuple[str, str] | None = None) -> Iterator[BenchEnv]:
    """An environment for one scenario run; everything it made is stopped or deleted afterwards.

    ``servers`` (bootstrap, Redis URL): existing servers to use (see :func:`existing_servers`);
    None: a fresh embedded broker and redis-server.
    """
    workdir = Path(tempfile.mkdtemp(prefix="socialproof-bench-"))
    procs: list[ManagedProcess] = []
    env: BenchEnv | None = None
    first_namespace = len(_namespaces)
    failing = False
    try:
        if servers is None:
            kafka_port, redis_port = free_port(), free_port()
            procs.append(
                embedded_broker(
                    kafka_port, workdir / "kafka", echo=False, log_path=workdir / "broker.log"
                ).start()
            )
            procs.append(
                redis_server(
                    redis_port, workdir / "redis", echo=False, log_path=workdir / "redis.log"
                ).start()
            )
            bootstrap, redis_url = f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0"
            prefix = ""
        else:
            bootstrap, redis_url = servers
            # this run's own topics: nobody else's can start with it
            prefix = f"bench-{uuid.uuid4().hex[:12]}."
        settings = Settings(
            kafka_bootstrap_servers=bootstrap, redis_url=redis_url, kafka_topic_prefix=prefix
        )
        wait_for_broker(settings.kafka_bootstrap_servers)
        wait_for_redis(settings.redis_url)
        if servers is not None and (taken := _topics_with_prefix(settings)):
            # before `env` exists, so the clean-up below cannot touch them
            raise BenchConfigError(f"topics {taken} already exist; not touching them")
        env = BenchEnv(
            settings, workdir, existing=servers is not None, backend=describe_backend(servers)
        )
        ensure_topics(settings)
        yield env
    except BaseException:
        failing = True
        raise
    finally:
        problems: list[str] = []
        if env is not None:
            env.http.close()
            for worker in list(env.workers):
                worker.proc.stop()
            if env.existing:
                problems = clean_up(env.settings, _namespaces[first_namespace:])
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if problems:
            message = f"clean-up incomplete on the existing servers: {'; '.join(problems)}"
            if failing:  # the scenario's own error stays the one reported
                print(f"[bench] {message}", file=sys.stderr, flush=True)
            else:
                raise RuntimeError(message)


def _topics_with_prefix(settings: Settings) -> list[str]:
    prefix = settings.kafka_topic_prefix
    assert prefix, "only a run's own prefix may select topics to delete"
    names = admin_client(settings).list_topics(timeout=30).topics
    return sorted(name for name in names if name.startswith(prefix))


def clean_up(settings: Settings, made: list[str]) -> list[str]:
    """Delete what one environment made on existing servers: the topics under its prefix, the
    consumer groups of its namespaces (where the broker supports it) and every key of those
    namespaces. Each step is attempted even when an earlier one failed; returns the problems
    with topics and keys (groups are best effort, see :func:`_delete_groups`)."""
    problems: list[str] = []
    admin = admin_client(settings)  # alive until its futures resolve
    try:
        topics = _topics_with_prefix(settings)
        if topics:
            futures = admin.delete_topics(topics, operation_timeout=30)
            for name, fut in futures.items():
                try:
                    fut.result()
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        problems.append(f"topic {name}: {exc}")
    except Exception as exc:  # keep cleaning: the groups and keys are independent
        problems.append(f"topics: {type(exc).__name__}: {exc}")
    _delete_groups(admin, [group_for(ns) for ns in made])
    try:
        client = redis_sync.Redis.from_url(settings.redis_url, socket_timeout=30)
        try:
            for ns in made:
                delete_namespace(client, ns)
        finally:
            client.close()
    except Exception as exc:
        problems.append(f"redis: {type(exc).__name__}: {exc}")
    return problems


def _delete_groups(admin: AdminClient, groups: list[str]) -> None:
    """Delete those of ``groups`` that exist. Best effort: a broker that cannot list or delete
    groups gets a line on stderr (a left group holds offsets of deleted topics, no data, and
    Kafka expires it after offsets.retention.minutes)."""
    if not groups:
        return
    try:
        listed = admin.list_consumer_groups(request_timeout=30).result()
        existing = sorted({g.group_id for g in listed.valid} & set(groups))
        futures = admin.delete_consumer_groups(existing, request_timeout=30) if existing else {}
    except Exception as exc:
        print(f"[bench] consumer groups not deleted ({exc}): {groups}", file=sys.stderr)
        return
    for group, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                print(f"[bench] consumer group {group} not deleted: {exc}", file=sys.stderr)


def delete_namespace(client: redis_sync.Redis, namespace: str, batch: int = 500) -> int:
    """Delete every key of ``namespace`` (``<ns>:*``) and its active-namespace pointer, in
    batches of UNLINK; returns how many keys there were. Never FLUSHDB: the database is shared."""
    deleted = 0
    pending: list[bytes | str] = [namespaces.pointer_key(namespace)]
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        pending.append(key)
        if len(pending) >= batch:
            deleted += client.unlink(*pending)
            pending.clear()
    if pending:
        deleted += client.unlink(*pending)
    return deleted
