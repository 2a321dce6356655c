"""A full replay keeps erased users and withdrawn consent out: ``socialproof replay rebuild
--switch`` recomputes every counter from the event log into a new namespace, switches readers to
it, and what the notifier serves afterwards still equals the oracle (erasures and consent changes
included), and new events keep being counted.

Runs on a private broker and Redis: a rebuild moves the namespace pointer of its Redis, which
would pull the session stack's namespace away from under the other tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis

from contracts import events as ev
from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader
from tests.integration.test_counters_store import purchase
from tests.integration.test_processor_support import publish, publish_all
from tests.support.convergence import first_mismatch
from tests.support.eventsource import EventSource
from tests.support.private import ROOT, PrivateBackend
from tests.support.waiting import wait_for
from tools.loadgen import LoadConfig, LoadGenerator

pytestmark = pytest.mark.integration


def served_mismatch(url: str, token_of, oracle: Oracle, products: list[str],
                    viewers: list[str]) -> str | None:
    """The first difference between what the notifier serves and the oracle, or None."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    body = httpx.get(f"{url}/v1/proof/products", params={"ids": ",".join(products)},
                     timeout=10).json()
    for state in body["products"]:
        state.pop("as_of", None)
        want = oracle.proof(state["product_id"], now)
        if state != want:
            return f"{state['product_id']}: served {state} != oracle {want}"
    for viewer in viewers:
        got = httpx.get(f"{url}/v1/proof/products", params={"ids": ",".join(products)},
                        headers={"Authorization": f"Bearer {token_of(viewer)}"}, timeout=10)
        for state in got.json()["products"]:
            want = len(oracle.friends_who_bought(viewer, state["product_id"]))
            if state["friends_bought"]["count"] != want:
                return f"friends_bought({viewer}, {state['product_id']}): {state} != {want}"
    for product in products[:4]:
        items = httpx.get(f"{url}/v1/activity", params={"products": product}, timeout=10).json()
        names = sorted(i["first_name"] for i in items["items"])
        want_names = sorted(n for _, n, _ in oracle.activity(product))
        if names != want_names:
            return f"activity({product}): {names} != {want_names}"
    return None


async def stored_mismatch(redis_url: str, namespace: str, oracle: Oracle, products: list[str],
                         viewers: list[str]) -> str | None:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return await first_mismatch(ProofReader(redis, namespace), oracle, products, viewers,
                                    int(datetime.now(UTC).timestamp() * 1000))
    finally:
        await redis.aclose()


def test_a_full_replay_keeps_erased_and_withdrawn_users_out(private: PrivateBackend) -> None:
    run = uuid.uuid4().hex[:6]
    ns, group = f"rp{run}", f"g-rp-{run}"
    # Given a shop whose events (all two hours old: no window boundary moves during the test)
    # include erasures and consent withdrawn by buyers with friends
    gen = LoadGenerator(LoadConfig(
        seed=3, users=60, products=8, mean_friends=8, id_prefix=f"rp{run}-",
        anchor=datetime.now(UTC) - timedelta(hours=2), span_hours=0.5,
    ))
    events = list(gen.setup_events()) + list(gen.activity_events(1200))
    erased = gen.erase_events(4)
    buyers = sorted({e.payload.user_id for e in events if isinstance(e, ev.PurchaseCompleted)})
    withdrawn = [u for u in buyers if u not in {e.payload.user_id for e in erased}][:4]
    later = gen.anchor + timedelta(minutes=5)
    events += erased + [
        ev.PrivacySettingsChanged.create(
            {"user_id": u, "share_purchases_with_friends": False, "show_in_activity_feed": False},
            producer="test", occurred_at=later)
        for u in withdrawn
    ]
    oracle = Oracle(events)
    # viewers who are friends of the erased / withdrawn users (the ones who could see them)
    hidden = {e.payload.user_id for e in erased} | set(withdrawn)
    viewers = sorted({f for u in hidden for f in oracle.friends.get(u, set())} - hidden)[:6]
    worker = private.worker(ns, group)
    notifier = private.service("notifier", ns)
    tokens: dict[str, str] = {}

    def token_of(viewer: str) -> str:
        if viewer not in tokens:
            tokens[viewer] = httpx.post(
                f"{notifier.url}/v1/viewer-tokens", json={"viewer_id": viewer}, timeout=5,
                headers={"Authorization": f"Bearer {private.token}"}).json()["token"]
        return tokens[viewer]

    asyncio.run(publish(private.settings, events, concurrently=True))
    products = gen.product_ids
    wait_for(lambda: served_mismatch(notifier.url, token_of, oracle, products, viewers) is None,
             30, "the live counters to match the oracle")
    assert any(oracle.friends_who_bought(v, p) for v in viewers for p in products), \
        "the scenario has no friend purchases to check"
    # And a live stream open on the notifier
    watched = products[0]
    stream = EventSource(f"{notifier.url}/v1/proof/stream?products={watched}").__enter__()
    stream.next_matching(lambda e: True, timeout=5)
    # When the counters are rebuilt from the whole log and readers switched to the result (the
    # old namespace is deleted 2 s after the switch: readers must have moved by then)
    env = {**os.environ, **private.env(ns),
           "SOCIALPROOF_WORKER_CONSUMER_GROUP": group}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "replay", "rebuild", "--switch", "--yes",
         "--grace", "2", "--handover", "1", "--json"],
        env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["switched"] and summary["replayed"] >= len(events), summary
    rebuilt = summary["namespace"]
    status = subprocess.run(
        [sys.executable, "-m", "cli", "replay", "status", "--json"],
        env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60,
    )
    assert status.returncode == 0, status.stderr[-2000:]
    pointer = json.loads(status.stdout)
    assert pointer["active"] == rebuilt != ns and not pointer["shadow"], pointer
    # Then the rebuilt namespace holds exactly the oracle's counters: the replay kept the erased
    # and withdrawn users out
    assert asyncio.run(stored_mismatch(private.redis_url, rebuilt, oracle, products,
                                       viewers)) is None
    # And the notifier serves the rebuilt counters (it follows the switch)
    problem = served_mismatch(notifier.url, token_of, oracle, products, viewers)
    assert problem is None, f"after the replay: {problem}"
    # And the live worker keeps counting into the new namespace
    newcomer = purchase(f"o-{run}-new", f"u-{run}-new", products[0], datetime.now(UTC))
    publish_all(private.settings, [newcomer])
    oracle = Oracle([*events, newcomer])
    try:
        wait_for(lambda: served_mismatch(notifier.url, token_of, oracle, products, viewers)
                 is None, 15, "a purchase after the switch to be served")
        # And pushed to the stream that was open through the switch
        now = int(datetime.now(UTC).timestamp() * 1000)
        expected = oracle.bought(watched, now)["24h"]
        stream.next_matching(lambda e: e.json()["bought"]["24h"] == expected, timeout=10)
    finally:
        stream.__exit__(None, None, None)
    assert worker.proc.running
