"""The stream worker is killed with SIGKILL at random points, ten times, while a stream of 20,000
events (with producer-side duplicates) arrives: the final counters equal the oracle computed from
the exact event list, nothing lost and nothing counted twice.

Each worker life: a new ``socialproof worker`` process joins the private consumer group, a slice
of the stream is published (paced, so the worker is busy while it arrives), and the worker is
killed once it has processed a random share of that slice, i.e. between a batch's Redis writes and
its offset commit as often as anywhere else. Its replacement resumes from the last committed
offsets and redelivers what the dead one may already have applied. Workers run with a 2 s
session timeout (the private broker allows it), so each dead member leaves the group in ~2 s
rather than the 6 s of Apache Kafka's minimum.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from contracts.views import Keys
from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader
from socialproof.kafka import EventPublisher
from tests.support.convergence import wait_converged
from tests.support.private import QUICK_FAILOVER_ENV, PrivateBackend, metric_total
from tests.support.streams import publish_paced, with_duplicates
from tools.loadgen import DEFAULT_MIX, LoadConfig, LoadGenerator

pytestmark = pytest.mark.integration

TOTAL = 20_000
KILLS = 10
DUPLICATE_RATE = 0.04
PROCESSED = "socialproof_events_processed_total"


async def processed(client: httpx.AsyncClient, url: str) -> float:
    try:
        text = (await client.get(f"{url}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(PROCESSED + "{")
    )


async def test_sigkill_ten_times_mid_stream_ends_exactly_at_the_oracle(
    private: PrivateBackend,
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    # Given 20,000 events (setup, activity with questions and answers, erasures) with 4%
    # producer-side duplicates, and buyers who asked for notes about questions
    gen = LoadGenerator(
        LoadConfig(
            seed=seed, users=400, products=60, mean_friends=8, id_prefix=f"k{run}-",
            consent_questions_rate=0.5, mix={**DEFAULT_MIX, "question": 0.04, "answer": 0.06},
        )
    )
    unique_target = int(TOTAL * (1 - DUPLICATE_RATE))
    base = list(gen.setup_events())
    base += list(gen.activity_events(unique_target - len(base) - 5)) + gen.erase_events(5)
    events = with_duplicates(rng, base, TOTAL)
    assert len(events) == TOTAL and len({e.event_id for e in events}) == len(base)
    oracle = Oracle(events)
    namespace, group = f"kill{run}", f"g-kill-{run}"
    # split into one slice per worker life (the last life sees the stream end)
    cuts = sorted(rng.sample(range(1, TOTAL), KILLS))
    slices = [events[a:b] for a, b in zip([0, *cuts], [*cuts, TOTAL], strict=True)]
    publisher = EventPublisher(private.settings, client_id="test-kills")
    kills: list[tuple[int, int, float]] = []  # slice size, kill threshold, processed at kill
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        try:
            for life, part in enumerate(slices):
                # started on this thread: children die with the thread that started them
                # a 2 s session: the replacement's join waits for the dead member to leave
                worker = private.worker(namespace, group, **QUICK_FAILOVER_ENV)
                sending = asyncio.create_task(publish_paced(publisher, part))
                if life == len(slices) - 1:
                    await sending
                    break
                # When it has processed a random share of what it gets in this life, SIGKILL
                threshold = rng.randint(max(1, len(part) // 10), max(2, len(part) * 8 // 10))
                deadline = time.monotonic() + 60
                while (done := await processed(http, worker.url)) < threshold:
                    worker.proc.ensure_alive()
                    assert time.monotonic() < deadline, f"life {life}: stuck at {done} events"
                    await asyncio.sleep(0.01)
                worker.kill()
                kills.append((len(part), threshold, done))
                await sending  # the rest of the slice arrives while no worker runs
            # Then the last worker brings the store exactly to the oracle
            redis = aioredis.Redis.from_url(private.redis_url, decode_responses=True)
            try:
                took = await wait_converged(
                    ProofReader(redis, namespace), oracle, gen.product_ids,
                    rng.sample(gen.user_ids, 20), int(gen.anchor.timestamp() * 1000),
                    timeout=90, alive=worker.proc.ensure_alive,
                )
                # And every user's question notes are the oracle's: none lost, none twice
                keys = Keys(namespace)
                for user in gen.user_ids:
                    assert await redis.zrevrange(keys.notes(user), 0, -1) == oracle.notes(user)
            finally:
                await redis.aclose()
        finally:
            publisher.close()
    assert len(kills) == KILLS
    # the figures are the intended ones, not trivially empty
    assert sum(oracle.bought(p, int(gen.anchor.timestamp() * 1000))["7d"]
               for p in gen.product_ids) > 1000
    assert sum(len(oracle.notes(u)) for u in gen.user_ids) > 100
    print(
        f"\nseed {seed}: {TOTAL} events ({TOTAL - len(base)} duplicates), {len(kills)} SIGKILLs "
        f"(slice, threshold, processed at kill): {kills}; converged {took:.1f}s after the last "
        f"event, {time.monotonic() - started:.1f}s in all; "
        f"last worker processed {metric_total(worker.url, PROCESSED):.0f}"
    )
    worker.stop()
