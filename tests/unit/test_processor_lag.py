"""The worker's lag gauge (``socialproof_processor_lag_seconds``) with a fake Kafka consumer: it
shows how old the newest record of the last committed batch was, and 0 once a fetch is empty.
The real worker's figure under a burst is read by ``make bench`` (scenario burst_lag)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiokafka
import pytest

from services.counters.app import BatchConsumer
from services.counters.settings import CountersSettings
from socialproof.metrics import PROCESSOR_LAG


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int  # ms, as aiokafka gives it
    key: bytes = b"k"
    value: bytes = b"{}"


class FakeConsumer:
    """Hands out the given fetches in turn, then empty ones; records every commit."""

    def __init__(self, fetches: list[dict]) -> None:
        self.fetches = list(fetches)
        self.commits: list[dict] = []
        self.empty_fetches = 0

    def __call__(self, *topics: str, **config: object) -> FakeConsumer:
        return self  # stands in for the AIOKafkaConsumer class

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assignment(self) -> set:
        return set()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        await asyncio.sleep(0.001)
        if self.fetches:
            return self.fetches.pop(0)
        self.empty_fetches += 1
        return {}

    async def commit(self, offsets: dict) -> None:
        await asyncio.sleep(0.01)  # a round trip to the broker, as a real commit
        self.commits.append(offsets)


class Processor:
    def __init__(self) -> None:
        self.handled: list[list] = []

    async def handle(self, records: list, fetched_at: float | None = None) -> None:
        self.handled.append(records)


def lag() -> float:
    return PROCESSOR_LAG._value.get()


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_lag_is_the_age_of_the_newest_committed_record_and_zero_when_caught_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a backlog whose newest record (partition 1) was stamped 120 s ago
    now_ms = int(time.time() * 1000)
    fetch = {
        ("t", 0): [Record("t", 0, 7, now_ms - 300_000), Record("t", 0, 8, now_ms - 200_000)],
        ("t", 1): [Record("t", 1, 3, now_ms - 120_000)],
    }
    fake = FakeConsumer([fetch])
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", fake)
    processor = Processor()
    consumer = BatchConsumer(CountersSettings(), processor)  # type: ignore[arg-type]
    PROCESSOR_LAG.set(-1)
    seen: list[float] = []

    async def watch() -> None:
        while True:
            if lag() not in (-1, *seen[-1:]):
                seen.append(lag())
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    task = asyncio.ensure_future(consumer._consume())
    try:
        # When the worker applies and commits it, then finds nothing new
        await until(lambda: fake.commits and fake.empty_fetches >= 2)
    finally:
        task.cancel()
        watcher.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    # Then the gauge showed the newest record's age while behind, and 0 once caught up
    assert fake.commits == [{("t", 0): 9, ("t", 1): 4}]
    assert len(seen) == 2, seen
    assert 120 <= seen[0] < 125
    assert seen[1] == 0
