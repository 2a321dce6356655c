"""Restarts of the serving store and of the notifier, with a private worker, notifier and Redis.

- Redis (append-only, as the dev stack runs it) is restarted, then killed and started again,
  while a stream is being applied: the counters converge to the oracle, and the worker and the
  notifier recover by themselves (readiness, live push). (A SIGKILL loses nothing Redis has
  acknowledged: appendfsync everysec has already written it to the kernel; only a machine crash
  could lose up to a second, which a replay rebuild repairs.)
- The notifier is restarted while SSE clients are connected: it stops promptly despite the open
  streams, the clients reconnect by themselves (as EventSource does) with Last-Event-ID and get
  the current state at once, including the viewer's friend data.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis

from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader, to_json
from socialproof.kafka import EventPublisher
from tests.integration.test_counters_store import purchase
from tests.integration.test_processor_support import processed_count
from tests.support.convergence import wait_converged
from tests.support.eventsource import EventSource
from tests.support.private import PrivateBackend
from tests.support.storefront import friends, person, publish
from tests.support.streams import publish_paced, with_duplicates
from tests.support.waiting import wait_for
from tools.loadgen import LoadConfig, LoadGenerator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(private: PrivateBackend):
    """One worker and one notifier on the private backend, namespace ``live``."""
    worker = private.worker("live", f"g-live-{uuid.uuid4().hex[:6]}")
    notifier = private.service("notifier", "live")
    return [worker, notifier]


def proof(url: str, product: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/v1/proof/products/{product}", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


async def test_redis_restarted_mid_stream_converges_to_the_oracle(
    private: PrivateBackend, live
) -> None:
    worker, notifier = live
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    gen = LoadGenerator(
        LoadConfig(seed=seed, users=200, products=30, mean_friends=6, id_prefix=f"r{run}-")
    )
    base = list(gen.setup_events()) + list(gen.activity_events(5000))
    events = with_duplicates(rng, base, len(base) + 200)
    oracle = Oracle(events)
    watched = gen.product_ids[0]
    before = processed_count(worker.url)
    publisher = EventPublisher(private.settings, client_id="test-redis-restart")
    with EventSource(f"{notifier.url}/v1/proof/stream?products={watched}") as sse:
        sse.next_matching(lambda e: True, timeout=5)
        try:
            # Given a stream being applied
            sending = asyncio.create_task(publish_paced(publisher, events))
            # When Redis is restarted mid-stream (SIGTERM: AOF written), and later crashes
            # (SIGKILL) and is started again, both times on the same port and data
            points = [before + rng.randint(len(events) // 6, len(events) // 3),
                      before + rng.randint(len(events) // 2, len(events) * 2 // 3)]
            for crash, point in zip((False, True), points, strict=True):
                deadline = time.monotonic() + 60
                while processed_count(worker.url) < point:
                    assert time.monotonic() < deadline, "the worker does not progress"
                    await asyncio.sleep(0.02)
                # (on this thread: a child started from a short-lived thread dies with the
                # thread, because of the dev stack's parent-death signal)
                private.restart_redis(crash=crash)
            await sending
        finally:
            publisher.close()
        # Then every counter converges to the oracle
        redis = aioredis.Redis.from_url(private.redis_url, decode_responses=True)
        try:
            took = await wait_converged(
                ProofReader(redis, "live"), oracle, gen.product_ids, rng.sample(gen.user_ids, 10),
                int(gen.anchor.timestamp() * 1000), timeout=60,
                alive=worker.proc.ensure_alive,
            )
        finally:
            await redis.aclose()
        # And the worker and notifier are ready again without a restart
        for url in (worker.url, notifier.url):
            wait_for(lambda u=url: httpx.get(f"{u}/readyz", timeout=3).status_code == 200,
                     20, f"{url}/readyz after the Redis restart")
        # And live push works again: a new purchase of the watched product reaches the stream
        bought = proof(notifier.url, watched)["bought"]["24h"]
        publish(private.settings, purchase(f"o-{run}-after", f"u-{run}-after", watched,
                                           datetime.now(UTC)))
        sse.next_matching(lambda e: e.json()["bought"]["24h"] == bought + 1, timeout=10)
    assert worker.proc.running and notifier.proc.running
    print(f"\nseed {seed}: {len(events)} events, Redis restarted / killed after "
          f"{[p - before for p in points]} processed; converged {took:.1f}s after the last ack")


def test_a_restarted_notifier_is_reconnected_to_with_the_current_state_at_once(
    private: PrivateBackend, live
) -> None:
    worker, notifier = live
    run = uuid.uuid4().hex[:6]
    ana, ben, item = f"ana-{run}", f"ben-{run}", f"p-{run}"
    publish(private.settings, *person(ana, "Ana"), *person(ben, "Ben"), friends(ana, ben))
    token = httpx.post(
        f"{notifier.url}/v1/viewer-tokens", json={"viewer_id": ana},
        headers={"Authorization": f"Bearer {private.token}"}, timeout=5,
    ).json()["token"]
    base = f"{notifier.url}/v1/proof/stream?products={item}"
    port = int(notifier.url.rsplit(":", 1)[1])
    with (
        EventSource(base) as anonymous,
        EventSource(f"{base}&viewer_token={token}") as viewer,
    ):
        # Given two connected clients that saw the current state
        for client in (anonymous, viewer):
            client.next_matching(lambda e: e.json()["bought"]["24h"] == 0, timeout=5)
        # When the notifier is restarted (SIGTERM, as a deployment does) with the streams open
        stopping = time.monotonic()
        notifier.stop()
        stop_took = time.monotonic() - stopping
        # ... and Ana's friend Ben buys the product while it is down
        publish(private.settings, purchase(f"o-{run}", ben, item, datetime.now(UTC)))
        wait_for(lambda: _stored(private, item), 10,
                 "the purchase to be applied")
        new = private.service("notifier", "live", port=port)
        ready_at = time.monotonic()
        # Then both clients reconnect on their own and show the current state at once
        now = anonymous.next_matching(lambda e: True, timeout=10)
        mine = viewer.next_matching(lambda e: True, timeout=10)
        reconnect_s = time.monotonic() - ready_at
    assert now.json()["bought"]["24h"] == 1, now.data
    assert "friends_bought" not in now.json()
    assert mine.json()["friends_bought"] == {"count": 1, "names": ["Ben"]}, mine.data
    assert anonymous.connections == 2 and viewer.connections == 2
    # And the process did not wait for the open streams to be closed by their clients
    assert stop_took < 5, f"the notifier took {stop_took:.1f}s to stop with streams open"
    print(f"\nnotifier stopped in {stop_took:.2f}s with 2 streams open; clients had the current "
          f"state {reconnect_s:.2f}s after it was ready again")
    live[1] = new  # the module's notifier is the new process from now on


def _stored(private: PrivateBackend, item: str) -> bool:
    async def read() -> int:
        redis = aioredis.Redis.from_url(private.redis_url, decode_responses=True)
        try:
            return to_json(await ProofReader(redis, "live").read(item))["bought"]["24h"]
        finally:
            await redis.aclose()

    return asyncio.run(read()) == 1
