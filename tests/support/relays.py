"""Support for the reward relay tests (tests/integration/test_reward_relay.py).

- :func:`relay_settings`: worker settings with a topic prefix, Redis namespace and consumer group
  of the test's own (so its ``transactional.id`` is its own too), and the reward topic created.
- :func:`add_entries`: reward transitions XADDed to the outbox stream with the fields the
  processor's script writes (``contracts.views``), as the relay would find them.
- :func:`read_rewards`: the reward topic read to its end, ``read_committed`` (what consumers
  see) or ``read_uncommitted`` (also what aborted transactions left in the log).
- :class:`RelayProcess`: the relay as a real process (``python -m services.counters.relay``), or
  one that SIGKILLs itself right after its N-th commit, before the checkpoint
  (``python -m tests.support.relays N``): a crash exactly in the window recovery exists for.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from contracts import codec
from contracts.events import Event
from contracts.topics import ORDERS, REWARDS
from services.counters.relay import OUTBOX_ID_HEADER, RewardRelay
from services.counters.relay import main as relay_main
from services.counters.settings import CountersSettings
from socialproof.kafka import ensure_topics, topic_name
from socialproof.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]


def relay_settings(bootstrap: str, redis_url: str, tag: str | None = None) -> CountersSettings:
    tag = tag or uuid.uuid4().hex[:10]
    settings = CountersSettings(
        kafka_bootstrap_servers=bootstrap,
        redis_url=redis_url,
        kafka_topic_prefix=f"relay-{tag}.",
        redis_namespace=f"rl{tag}",
        worker_consumer_group=f"relay-{tag}",
    )
    ensure_topics(settings, [REWARDS, ORDERS])
    return settings


def settings_env(settings: CountersSettings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
        "SOCIALPROOF_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "SOCIALPROOF_REDIS_NAMESPACE": settings.redis_namespace,
        "SOCIALPROOF_WORKER_CONSUMER_GROUP": settings.worker_consumer_group,
        "SOCIALPROOF_LOG_FORMAT": "json",
    }


def entry_fields(n: int, tag: str = "t") -> dict[str, str]:
    """The n-th test transition: even n earned, odd n withdrawn (each its own reward)."""
    reward_id = "rw-" + hashlib.sha1(f"{tag}|{n}".encode()).hexdigest()[:24]
    coupon = "SP-" + hashlib.sha1(f"secret|{reward_id}".encode()).hexdigest()[:16].upper()
    fields = {
        "type": "earned" if n % 2 == 0 else "withdrawn",
        "reward": reward_id,
        "P": f"promo-{tag}",
        "role": "sharer" if n % 3 else "buyer",
        "u": f"u-{n}",
        "coupon": coupon,
        "kind": "percent",
        "value": "10",
        "currency": "",
        "buyers": str(3 + n % 4),
        "reason": "refunded" if n % 2 else "",
        "ts": str(1_767_225_600_000 + n * 1000),
        "seq": str(1 + n % 2),
    }
    return fields


def add_entries(redis, settings: CountersSettings, numbers: range, tag: str = "t") -> list[str]:
    """XADD the transitions ``numbers`` (sync Redis client), all at once (MULTI, as one script
    call of the processor would); returns their stream ids."""
    outbox = f"{settings.redis_namespace}:rewards:outbox"
    pipe = redis.pipeline(transaction=True)
    for n in numbers:
        pipe.xadd(outbox, entry_fields(n, tag))
    return list(pipe.execute())


@dataclass(frozen=True)
class Published:
    offset: int
    key: str
    headers: dict[str, str]
    event: Event

    @property
    def outbox_id(self) -> str:
        return self.headers[OUTBOX_ID_HEADER]


def read_rewards(
    settings: CountersSettings, isolation: str = "read_committed", timeout: float = 20.0
) -> list[Published]:
    """Every record of the reward topic from the beginning to its end (blocking)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"tests-rewards-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    found: list[Published] = []
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic_name(settings, REWARDS), 0, OFFSET_BEGINNING)])
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    return found
                if err is not None:
                    raise KafkaException(err)
                headers = {k: v.decode() for k, v in msg.headers() or []}
                found.append(
                    Published(msg.offset(), msg.key().decode(), headers, codec.decode(msg.value()))
                )
        raise AssertionError(f"the reward topic was not read to its end within {timeout}s")
    finally:
        consumer.close()


# --- the relay as a process of its own ------------------------------------------------------------


class CrashingRelay(RewardRelay):
    """SIGKILLs its own process right after its ``crash_after``-th commit, before the
    checkpoint is stored: no cleanup, no abort, no close, as a crash (OOM kill, node loss)."""

    crash_after = 0
    commits = 0

    def _commit(self, producer) -> None:
        super()._commit(producer)
        type(self).commits += 1
        if type(self).commits >= self.crash_after > 0:
            os.kill(os.getpid(), signal.SIGKILL)


class RelayProcess:
    """``python -m services.counters.relay`` with the test's settings, or with ``crash_after``
    ``python -m tests.support.relays N`` (the same, with :class:`CrashingRelay`)."""

    def __init__(self, settings: CountersSettings, workdir: Path, crash_after: int = 0) -> None:
        argv = [sys.executable, "-m", "services.counters.relay"]
        if crash_after:
            argv = [sys.executable, "-m", "tests.support.relays", str(crash_after)]
        self.log = workdir / f"relay-{uuid.uuid4().hex[:6]}.log"
        self.proc = ManagedProcess(
            "relay", argv, env=settings_env(settings), cwd=str(ROOT), echo=False, log_path=self.log
        )

    def start(self) -> RelayProcess:
        self.proc.start()
        return self

    def stop(self) -> None:
        self.proc.stop()

    def exited(self) -> int | None:
        assert self.proc.proc is not None
        return self.proc.proc.poll()


if __name__ == "__main__":
    CrashingRelay.crash_after = int(sys.argv[1])
    asyncio.run(relay_main(CrashingRelay))
