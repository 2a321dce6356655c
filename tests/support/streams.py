"""Event streams for fault-injection tests: producer-side duplicates and paced publishing."""

from __future__ import annotations

import asyncio
import random

from contracts.events import Event
from socialproof.kafka import EventPublisher


def with_duplicates(rng: random.Random, events: list[Event], total: int) -> list[Event]:
    """``events`` plus producer retries: events sent again a little later (same event id, so the
    same key and partition), up to ``total`` records in all."""
    out = list(events)
    for _ in range(total - len(out)):
        i = rng.randrange(len(out))
        out.insert(min(len(out), i + rng.randint(1, 400)), out[i])
    return out


async def publish_paced(publisher: EventPublisher, events: list[Event], chunk: int = 100) -> None:
    """Every event acknowledged by the broker, ``chunk`` at a time with a short pause between
    chunks, so a worker is busy while the stream arrives rather than handed it in one fetch."""
    for start in range(0, len(events), chunk):
        await asyncio.gather(*(publisher.publish(e) for e in events[start : start + chunk]))
        await asyncio.sleep(0.02)
