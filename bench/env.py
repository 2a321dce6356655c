"""What a scenario runs against: a fresh embedded broker and Redis on free ports, and helpers.

- ``produce(values)``: pre-encoded events straight to their topics, as fast as the idempotent
  producer goes; returns when the broker acknowledged every record.
- ``start_worker(namespace, group, per_event=False)``: a real ``socialproof worker`` process (or
  the per-event baseline) with its own namespace, consumer group and web port, ready once it
  holds partitions.
- ``processed(worker)``: the worker's ``socialproof_events_processed_total`` from ``/metrics``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from confluent_kafka import Producer

from contracts import codec
from contracts.events import Event
from contracts.topics import topic_for
from socialproof.devstack import (
    EMBEDDED_GROUP_ENV,
    ManagedProcess,
    embedded_broker,
    free_port,
    redis_server,
    wait_for_broker,
    wait_for_redis,
    wait_worker_assigned,
)
from socialproof.kafka import ensure_topics, producer_config
from socialproof.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def encode_all(events: Iterable[Event]) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) per event: encode before timing, so the clock sees only the system."""
    out = []
    for event in events:
        topic = topic_for(event)
        out.append((topic.name, topic.key_of(event).encode(), codec.encode(event)))
    return out


def new_namespace() -> str:
    return f"b{uuid.uuid4().hex[:8]}"


@dataclass
class Worker:
    proc: ManagedProcess
    url: str
    namespace: str


@dataclass
class BenchEnv:
    settings: Settings
    workdir: Path
    workers: list[Worker] = field(default_factory=list)

    def produce(self, records: list[tuple[str, bytes, bytes]]) -> float:
        """Produce and wait for every acknowledgement; returns the monotonic time of the last."""
        config = producer_config(self.settings, "bench")
        config.update(
            {"linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 2_000_000}
        )
        producer = Producer(config)
        failures: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                failures.append(str(err))

        for topic, key, value in records:
            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
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
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "REDIS_URL": self.settings.redis_url,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_WORKER_CONSUMER_GROUP": f"bench-{namespace}",
            "SOCIALPROOF_WORKER_WEB_PORT": str(port),
            "SOCIALPROOF_LOG_LEVEL": "WARNING",
            **EMBEDDED_GROUP_ENV,
        }
        if batch_size:
            env["SOCIALPROOF_WORKER_BATCH_SIZE"] = str(batch_size)
        argv = (
            [sys.executable, "-m", "bench.baseline_worker"]
            if per_event
            else [sys.executable, "-m", "socialproof.cli", "worker"]
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

    @staticmethod
    def processed(worker: Worker) -> int:
        text = httpx.get(f"{worker.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("socialproof_events_processed_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

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


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    """A fresh broker and Redis for one scenario; everything is stopped afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="socialproof-bench-"))
    procs: list[ManagedProcess] = []
    env: BenchEnv | None = None
    try:
        kafka_port, redis_port = free_port(), free_port()
        procs.append(
            embedded_broker(kafka_port, echo=False, log_path=workdir / "broker.log").start()
        )
        procs.append(
            redis_server(
                redis_port, workdir / "redis", echo=False, log_path=workdir / "redis.log"
            ).start()
        )
        settings = Settings(
            kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
        )
        wait_for_broker(settings.kafka_bootstrap_servers)
        wait_for_redis(settings.redis_url)
        ensure_topics(settings)
        env = BenchEnv(settings, workdir)
        yield env
    finally:
        if env is not None:
            for worker in list(env.workers):
                worker.proc.stop()
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
