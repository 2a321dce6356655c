"""``socialproof replay rebuild``: counters recomputed from the whole log equal the live ones,
events arriving during a rebuild are not lost by the switch, ``--dry-run`` changes nothing, and
an interrupted rebuild leaves nothing half-switched.

Runs on a private broker and Redis (a rebuild moves its Redis's namespace pointer).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_sync

from contracts import events as ev
from contracts import namespaces
from services.counters.oracle import Oracle
from tests.integration.test_processor_support import dump, first_difference, publish_all
from tests.support.private import ROOT, PrivateBackend, metric_total, private
from tests.support.waiting import wait_for
from tools.loadgen import LoadConfig, LoadGenerator

__all__ = ["private"]  # the module-scoped private backend fixture


def log_with_everything(prefix: str) -> list[ev.Event]:
    """Setup, activity with refunds/cancellations/reviews/shares, consent changes, erasures and
    producer-side duplicates (the same events published twice)."""
    gen = LoadGenerator(LoadConfig(seed=7, users=60, products=12, mean_friends=8, span_hours=30,
                                   id_prefix=prefix))
    events = list(gen.setup_events()) + list(gen.activity_events(900))
    events += gen.erase_events(3)
    withdrawn = gen.user_ids[5]
    events.append(ev.PrivacySettingsChanged.create(
        {"user_id": withdrawn, "share_purchases_with_friends": False,
         "show_in_activity_feed": False},
        producer="social", occurred_at=gen.anchor + timedelta(minutes=1)))
    return events + events[100:250]  # duplicates


def rebuild(private: PrivateBackend, base: str, group: str, *args: str,
            timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, **private.env(base),
           "SOCIALPROOF_WORKER_CONSUMER_GROUP": group}
    return subprocess.run(
        [sys.executable, "-m", "cli", "replay", "rebuild", *args],
        env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


def pointer(client: redis_sync.Redis, base: str) -> namespaces.Namespaces:
    return namespaces.parse(client.hgetall(namespaces.pointer_key(base)), base)


@pytest.fixture(scope="module")
def world(private: PrivateBackend):
    """A live worker that has processed a log with everything in it."""
    base = f"rb{uuid.uuid4().hex[:6]}"
    group = f"live-{base}"
    worker = private.worker(base, group)
    events = log_with_everything(f"{base}-")
    publish_all(private.settings, events)
    wait_for(lambda: metric_total(worker.url, "socialproof_events_processed_total") >= len(events),
             60, "the live worker to process the log")
    client = redis_sync.Redis.from_url(private.redis_url, decode_responses=True)
    return {"base": base, "group": group, "worker": worker, "events": events, "client": client}


def test_dry_run_says_what_it_would_do_and_does_nothing(private: PrivateBackend, world) -> None:
    before = sorted(world["client"].scan_iter(count=5000))
    result = rebuild(private, world["base"], world["group"], "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"while live workers ('{world['group']}') keep serving '{world['base']}'" in result.stderr
    assert "dry run: nothing done" in result.stderr
    assert sorted(world["client"].scan_iter(count=5000)) == before


def test_a_rebuilt_namespace_equals_the_live_one(private: PrivateBackend, world) -> None:
    client, base = world["client"], world["base"]
    # When the counters are rebuilt from the log without switching
    result = rebuild(private, base, world["group"], "--yes", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rebuilt = summary["namespace"]
    assert not summary["switched"] and summary["replayed"] == len(world["events"])
    try:
        # Then every key of the rebuilt namespace equals the live one, value for value
        live, fresh = dump(client, base), dump(client, rebuilt)
        assert live, "the live namespace is empty"
        assert live == fresh, first_difference(live, fresh)
        # And the oracle agrees with both (erasure, consent and duplicates included)
        oracle = Oracle(world["events"])
        gone = [e.payload.user_id for e in world["events"] if isinstance(e, ev.UserErased)]
        assert all(oracle.first_name(u) is None for u in gone)
        # (only the tombstone set that keeps their later events out still names them)
        for key, value in fresh.items():
            if key == "erased":
                assert set(value) == set(gone)
                continue
            words = set(str(key).split(":")) | set(json.dumps(value).replace('"', " ").split())
            assert not words & set(gone), f"an erased user is still in {key}"
        # And nothing was switched
        assert pointer(client, base) == namespaces.Namespaces(active=base)
    finally:
        drop = subprocess.run([sys.executable, "-m", "cli", "replay", "drop", rebuilt,
                               "--yes"], env={**os.environ, **private.env(base)}, cwd=str(ROOT),
                              capture_output=True, text=True, timeout=60)
        assert drop.returncode == 0, drop.stderr
    assert dump(client, rebuilt) == {}


def test_an_interrupted_rebuild_leaves_nothing_half_switched(
    private: PrivateBackend, world
) -> None:
    client, base = world["client"], world["base"]
    env = {**os.environ, **private.env(base),
           "SOCIALPROOF_WORKER_CONSUMER_GROUP": world["group"]}
    keys_before = set(client.scan_iter(count=5000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "replay", "rebuild", "--switch", "--yes"],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Given a rebuild that has started writing its namespace
        def new_keys() -> set[str]:
            return {k for k in client.scan_iter(count=5000) if k not in keys_before
                    and not k.startswith("socialproof:")}

        wait_for(lambda: new_keys(), 90, "the rebuild to start writing")
        # When it is interrupted (Ctrl-C)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Then it says so, and nothing is switched or left behind
    assert proc.returncode == 130, stderr[-2000:]
    assert "nothing switched" in stderr
    assert pointer(client, base) == namespaces.Namespaces(active=base)
    assert new_keys() == set(), "the partial namespace was not removed"


def test_a_switch_loses_no_event_published_during_the_rebuild(
    private: PrivateBackend, world
) -> None:
    client, base = world["client"], world["base"]
    env = {**os.environ, **private.env(base),
           "SOCIALPROOF_WORKER_CONSUMER_GROUP": world["group"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "replay", "rebuild", "--switch", "--yes",
         "--handover", "2", "--grace", "1", "--json"],
        env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    late: list[ev.Event] = []
    try:
        # While the rebuild runs (replay, hand-over, switch), the shop keeps selling
        now = datetime.now(UTC)
        while proc.poll() is None and len(late) < 500:
            batch = [ev.PurchaseCompleted.create(
                {"order_id": f"{base}-late-{len(late) + i}", "user_id": f"{base}-late-u{len(late) + i}",
                 "currency": "EUR", "lines": [{"product_id": f"{base}-late-p", "quantity": 1,
                                               "unit_price": "1.00"}]},
                producer="orders", occurred_at=now) for i in range(5)]
            publish_all(private.settings, batch)
            late += batch
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["switched"] and summary["old_keys_deleted"] > 0
    active = pointer(client, base)
    assert active.active == summary["namespace"] and active.shadow is None
    # Then the new namespace holds exactly what the whole log says, late events included
    assert len(late) >= 20, "the rebuild finished before the test could sell during it"
    wait_for(lambda: client.zcard(f"{active.active}:buyers:{base}-late-p") == len(late), 20,
             "every purchase made during the rebuild to be counted")
    oracle = Oracle([*world["events"], *late])
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert oracle.bought(f"{base}-late-p", now_ms)["24h"] == len(late)
    # And the old namespace is gone after the grace period
    assert list(client.scan_iter(match=f"{base}:*", count=5000)) == []


def test_a_one_shard_namespace_rebuilt_into_four_shards_answers_the_same(
    private: PrivateBackend, world
) -> None:
    """The migration path of #16 on one Redis: rebuild into a new namespace with another shard
    count (``--shards``), switch, and readers answer as before; live writes follow the switch."""
    import asyncio

    import redis.asyncio as aioredis

    from contracts.layout import layout_field, resolve_shards
    from services.notifier.proof import ProofReader

    client, base = world["client"], world["base"]
    events = world["events"]
    products = sorted({line.product_id for e in events if isinstance(e, ev.PurchaseCompleted)
                       for line in e.payload.lines})
    viewers = sorted({e.payload.user_id for e in events if isinstance(e, ev.FriendshipAdded)})
    now_ms = int(datetime.now(UTC).timestamp() * 1000)

    async def answers(namespace: str, shards: int) -> tuple:
        aredis = aioredis.Redis.from_url(private.redis_url, decode_responses=True)
        try:
            reader = ProofReader(aredis, namespace, shards=shards)
            proofs = await reader.read_many(products, now_ms=now_ms)
            friends = [await reader.friends_bought(v, p) for v in viewers for p in products[:4]]
            trending = await reader.trending(now_ms=now_ms)
            return proofs, friends, trending
        finally:
            await aredis.aclose()

    raw = client.hgetall(namespaces.pointer_key(base))
    old = namespaces.parse(raw, base).active
    assert resolve_shards(raw, old, cluster=False) == 1  # the single-node default
    before = asyncio.run(answers(old, 1))
    assert any(p.bought.d7 for p in before[0]) and any(n for n, _ in before[1])
    # When the namespace is rebuilt with 4 shards and readers are switched to it
    result = rebuild(private, base, world["group"], "--shards", "4", "--switch", "--yes",
                     "--handover", "1", "--grace", "0", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    new = summary["namespace"]
    assert summary["switched"] and summary["shards"] == 4
    # Then the layout is recorded beside the pointer, the keys are under the shards' tags
    raw = client.hgetall(namespaces.pointer_key(base))
    assert namespaces.parse(raw, base).active == new and raw[layout_field(new)] == "4"
    assert layout_field(old) not in raw  # dropped with the old namespace
    keys = list(client.scan_iter(match=f"{new}:*", count=5000))
    assert keys and all(k.startswith(f"{new}:{{") for k in keys)
    assert len({k.split("}", 1)[0] for k in keys}) == 5  # 4 product shards + referrals
    # And readers of the 4 shards answer exactly what the one shard answered
    after = asyncio.run(answers(new, 4))
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]
    # And the live worker writes the new layout: a purchase after the switch is counted there
    product = f"{base}-after-p"
    sold = ev.PurchaseCompleted.create(
        {"order_id": f"{base}-after-shards", "user_id": f"{base}-after-u", "currency": "EUR",
         "lines": [{"product_id": product, "quantity": 1, "unit_price": "1.00"}]},
        producer="orders", occurred_at=datetime.now(UTC))
    publish_all(private.settings, [sold])

    async def counted() -> bool:
        aredis = aioredis.Redis.from_url(private.redis_url, decode_responses=True)
        try:
            return (await ProofReader(aredis, new, shards=4).read(product)).bought.h1 == 1
        finally:
            await aredis.aclose()

    wait_for(lambda: asyncio.run(counted()), 30, "the live worker to write the 4-shard layout")
