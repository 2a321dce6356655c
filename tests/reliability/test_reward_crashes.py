"""The stream worker, which also runs the reward relay (it holds ``orders.events`` partition 0), is
killed with SIGKILL five times while a referral-heavy stream arrives, each time with reward
transitions in flight: no reward event is published twice and none is lost, and the last event
of every reward says what the store and the oracle say it is.

The stream is a generated shop (``tests/support/referrals.py``: promotions, shares with links,
referred purchases, refunds, cancellations, a redefinition and an early end, redemptions,
erasures) of a random seed, with producer-side duplicates, published paced. Each worker life
waits until its relay is relaying and a random point of the stream is reached, then kills it at
one of the three moments the relay's exactly-once design exists for (in turn):

- *open* (lives 0, 3): the relay's transaction holds records in the log, not committed: the
  next relay's ``init_transactions`` must abort it (read_committed readers never see them) and
  its recovery must then publish those entries again;
- *committed* (lives 1, 4): a transaction committed, its checkpoint not stored: the next relay
  must find it on the topic (the recovery scan) instead of publishing it again;
- *pending* (life 2): the moment a script appended a transition to the outbox (a batch's Redis
  writes done, its offsets most likely not committed: its events come again, and the script
  must not emit for them twice).

The records of a transaction reach the broker, are committed and checkpointed within a few
milliseconds, too close together for an outside SIGKILL to land in between by chance. So the
workers run the relay with one fault-injection seam (this module run as ``python -m
tests.reliability.test_reward_crashes``: the real ``socialproof worker`` whose relay, in
``_commit``, flushes the transaction's records, notes ``b``, waits ``PAUSE_S``, commits, notes
``c`` and waits ``PAUSE_S`` before its checkpoint); the test watches the notes and kills in a
pause. The log of the next life says whether it recovered a lost checkpoint: required after
each *committed* kill, never after an *open* one.

Then: the store equals :class:`~services.counters.referral_oracle.ReferralOracle`; the outbox is
drained (the checkpoint trimmed it); and ``promotions.rewards`` read read_committed has every
emission number of every reward (``{base}:rewards:seq``) exactly once and in order (no event id,
no (reward, seq), no outbox id twice), transitions alternating from earned, the last one agreeing
with the final status. The seed is printed; ``SOCIALPROOF_TEST_SEED=<seed>`` replays the same
stream and kill points (the timing of each kill within them varies).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
import redis.asyncio as aioredis

from contracts import events as ev
from contracts.views import Keys
from services.counters.referral_oracle import ReferralOracle, coupon_code, reward_id
from services.counters.relay import REWARD_EVENT_NAMESPACE, RewardRelay, after, stream_id
from services.counters.settings import CountersSettings
from socialproof.kafka import EventPublisher
from tests.support.private import QUICK_FAILOVER_ENV, PrivateBackend, Proc
from tests.support.referrals import SECRET, generated_shop, oracle_errors, rewards
from tests.support.relays import Published, read_rewards
from tests.support.streams import with_duplicates

pytestmark = pytest.mark.integration

KILLS = 5
DUPLICATE_RATE = 0.1
#: how long the workers' relay waits between a commit and its checkpoint (see the docstring)
PAUSE_S = 0.4
COMMITS_ENV = "SOCIALPROOF_TEST_RELAY_COMMITS"
MODES = ("open", "committed", "pending")
RECOVERED = "reward relay recovered its position from the topic"
EARNED, WITHDRAWN = ev.RewardEarned, ev.RewardWithdrawn


# --- the worker with the seam (runs in the worker processes) ----------------------------------


class PausingRelay(RewardRelay):
    """The worker's relay, with each transaction held open ``PAUSE_S`` before its commit and
    ``PAUSE_S`` between the commit and its checkpoint; it appends ``b`` (records produced, about
    to commit) and ``c`` (committed) to the file ``COMMITS_ENV`` names."""

    def _commit(self, producer: Any) -> None:
        producer.flush(10)  # the records are in the log (uncommitted) before ``b``
        note("b")
        time.sleep(PAUSE_S)
        super()._commit(producer)
        note("c")
        time.sleep(PAUSE_S)


def note(mark: str) -> None:
    with open(os.environ[COMMITS_ENV], "a") as noted:
        noted.write(mark)


def pausing_worker() -> None:
    from cli.services import worker
    from services.counters import app

    app.RewardRelay = PausingRelay  # type: ignore[misc]
    worker()


# --- the test ------------------------------------------------------------------------------------


class Feed:
    """Publishes the stream from where it stopped, ``chunk`` events every ``pause`` s at most,
    until told to stop; ``slow()`` makes it a trickle (while a kill moment is awaited, so that
    the stream lasts)."""

    def __init__(self, publisher: EventPublisher, events: list[ev.Event]) -> None:
        self.publisher, self.events, self.sent = publisher, events, 0
        self.chunk, self.pause = 3, 0.01

    def slow(self, slow: bool = True) -> None:
        self.chunk, self.pause = (1, 0.03) if slow else (3, 0.01)

    async def run(self, stop: asyncio.Event) -> None:
        while self.sent < len(self.events) and not stop.is_set():
            part = self.events[self.sent : self.sent + self.chunk]
            await asyncio.gather(*(self.publisher.publish(e) for e in part))
            self.sent += len(part)
            await asyncio.sleep(self.pause)


def relay_marks(path: Path) -> str:
    """What the relay noted so far: ``b`` a transaction about to commit, ``c`` committed."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


async def behind(redis: aioredis.Redis, keys: Keys) -> int:
    """Outbox entries after the relay's checkpoint (not yet known to be published)."""
    checkpoint = await redis.hget(keys.rewards_relay, "id")
    low = after(checkpoint) if checkpoint else "-"
    return len(await redis.xrange(keys.rewards_outbox, min=low, max="+"))


async def wait_relaying(http: httpx.AsyncClient, worker: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        worker.proc.ensure_alive()
        try:
            body = (await http.get(f"{worker.url}/readyz", timeout=2)).json()
        except (httpx.HTTPError, ValueError):
            body = {}
        if (body.get("reward_relay") or {}).get("state") == "relaying":
            return
        assert time.monotonic() < deadline, f"the relay is not relaying after {timeout}s: {body}"
        await asyncio.sleep(0.05)


def topic_errors(
    published: list[Published],
    emitted: dict[str, int],
    oracle: ReferralOracle,
    stored: dict[str, dict[str, str]],
) -> list[str]:
    """Where the committed reward events are not each emission exactly once, in order, with the
    last one agreeing with the final status (empty: none)."""
    errors: list[str] = []
    ids = [p.event.event_id for p in published]
    outbox_ids = [p.outbox_id for p in published]
    if len(set(ids)) != len(ids):
        errors.append(f"{len(ids) - len(set(ids))} event ids published twice")
    if len(set(outbox_ids)) != len(outbox_ids):
        errors.append(f"{len(outbox_ids) - len(set(outbox_ids))} outbox entries published twice")
    numbered = {
        uuid.uuid5(REWARD_EVENT_NAMESPACE, f"{rid}#{n}"): n
        for rid, last in emitted.items()
        for n in range(1, last + 1)
    }
    history: dict[str, list[tuple[int, ev.Event]]] = {}
    for p in published:
        e, rid = p.event, p.event.payload.reward_id
        history.setdefault(rid, []).append((numbered.get(e.event_id, 0), e))
        d = e.payload
        if rid != reward_id(d.promotion_id, d.role, d.user_id) or d.coupon != coupon_code(
            SECRET, rid
        ):
            errors.append(f"{rid}: event of another reward or coupon: {d}")
    held = oracle.rewards()
    for rid in sorted(set(emitted) | set(history) | set(held) | set(stored)):
        events = history.get(rid, [])
        seqs = [n for n, _ in events]
        if seqs != list(range(1, emitted.get(rid, 0) + 1)):  # 0: an id of no emission
            errors.append(f"{rid}: emissions {seqs} published, {emitted.get(rid, 0)} made")
        kinds = [
            "earned" if isinstance(e, EARNED) else "withdrawn" if isinstance(e, WITHDRAWN) else "?"
            for _, e in events
        ]
        if kinds != ["earned", "withdrawn"] * (len(kinds) // 2) + ["earned"] * (len(kinds) % 2):
            errors.append(f"{rid}: transitions {kinds}")
        last, want = (kinds or [None])[-1], held.get(rid)
        if rid in stored and int(stored[rid]["seq"]) != len(kinds):
            errors.append(f"{rid}: {len(kinds)} events for seq {stored[rid]['seq']}")
        if want is None:
            ok = last in (None, "withdrawn")  # never earned, withdrawn, or its user erased
        elif want.status == "earned":
            ok = last == "earned"
        else:  # redeemed; a buyer's reward redeemed while its promotion had none is silent
            silent = want.role == "buyer" and stored.get(rid, {}).get("seq") == "0"
            ok = last == "earned" or (last is None and silent)
        if not ok:
            errors.append(f"{rid}: last event {last}, but the oracle says {want}")
    return errors


async def test_sigkill_around_reward_commits_emits_every_reward_exactly_once(
    private: PrivateBackend,
) -> None:
    seed = int(os.environ.get("SOCIALPROOF_TEST_SEED") or random.randrange(1 << 30))
    print(f"\nseed {seed}")
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    # Given a generated shop's events with 10% producer-side duplicates
    base, shop = generated_shop(rng.randrange(1 << 30))
    events = with_duplicates(rng, base, int(len(base) * (1 + DUPLICATE_RATE)))
    oracle = ReferralOracle(events, SECRET)
    namespace, group = f"rw{run}", f"g-rw-{run}"
    keys = Keys(namespace)
    noted = private.workdir / f"relay-commits-{run}"
    argv = [sys.executable, "-m", "tests.reliability.test_reward_crashes"]
    env = {**QUICK_FAILOVER_ENV, "SOCIALPROOF_COUPON_SECRET": SECRET, COMMITS_ENV: str(noted)}
    # each life is killed once the stream has passed a random point of its first 80%
    targets = sorted(rng.sample(range(len(events) // 10, len(events) * 8 // 10), KILLS))
    publisher = EventPublisher(private.settings, client_id="test-reward-kills")
    feed = Feed(publisher, events)
    redis = aioredis.Redis.from_url(private.redis_url, decode_responses=True)
    client = redis_sync.Redis.from_url(private.redis_url, decode_responses=True)
    kills: list[dict[str, Any]] = []
    workers: list[Proc] = []
    started = time.monotonic()
    try:
        async with httpx.AsyncClient() as http:
            for life in range(KILLS + 1):
                # started on this thread: children die with the thread that started them
                worker = private.worker(namespace, group, argv=argv, **env)
                workers.append(worker)
                await wait_relaying(http, worker)
                stop = asyncio.Event()
                feed.slow(False)
                sending = asyncio.create_task(feed.run(stop))
                if life == KILLS:
                    await sending
                    sent_all = time.monotonic()
                    break
                # When the stream passed this life's point and the moment comes, SIGKILL
                mode = MODES[life % len(MODES)]
                armed: tuple[int, tuple[int, int]] | None = None  # marks, newest outbox id
                deadline = time.monotonic() + 30
                while True:
                    worker.proc.ensure_alive()
                    newest = await redis.xrevrange(keys.rewards_outbox, count=1)
                    newest_id = stream_id(newest[0][0]) if newest else (0, 0)
                    marks = relay_marks(noted)
                    if armed is None and feed.sent >= targets[life]:
                        armed = (len(marks), newest_id)
                        feed.slow()
                    if armed is not None:
                        tail = marks[armed[0] :]
                        if mode == "pending" and newest_id > armed[1]:
                            break  # a script just appended it: not in any transaction yet
                        if mode == "open" and tail.endswith("b"):
                            break  # produced in a transaction that is not committed
                        if mode == "committed" and tail.endswith("c"):
                            break  # committed, not checkpointed
                    assert time.monotonic() < deadline, (
                        f"seed {seed}, life {life}: no {mode} moment within 30s "
                        f"({feed.sent}/{len(events)} events sent)"
                    )
                    await asyncio.sleep(0.002)
                worker.kill()
                stop.set()
                await sending
                kills.append(
                    {
                        "mode": mode,
                        "at_s": round(time.monotonic() - started, 1),
                        "sent": feed.sent,
                        "behind": await behind(redis, keys),
                    }
                )

            # Then the last worker brings the store to the oracle and the relay drains the outbox
            deadline = time.monotonic() + 60
            while True:
                errors = oracle_errors(client, namespace, oracle, shop["users"])
                drained = await redis.xlen(keys.rewards_outbox) == 0
                if not errors and drained and await redis.exists(keys.rewards_relay):
                    break
                worker.proc.ensure_alive()
                assert time.monotonic() < deadline, (
                    f"seed {seed}: no convergence within 60s (outbox drained: {drained}): "
                    f"{errors[:5]}"
                )
                await asyncio.sleep(0.1)
            took, settled = time.monotonic() - started, time.monotonic() - sent_all
        worker.stop()

        # And the topic has every emission of every reward exactly once, in order
        settings = CountersSettings(
            kafka_bootstrap_servers=private.bootstrap, redis_url=private.redis_url
        )
        published = await asyncio.to_thread(read_rewards, settings)
        everything = await asyncio.to_thread(read_rewards, settings, "read_uncommitted")
        emitted = {rid: int(n) for rid, n in client.hgetall(f"{namespace}:rewards:seq").items()}
        stored = rewards(client, namespace)
        errors = topic_errors(published, emitted, oracle, stored)
        assert not errors, f"seed {seed}: {len(errors)} problems: {errors[:10]}"
        assert len(published) == sum(emitted.values())
        # every outbox entry was published: the checkpoint is the last record's outbox id
        checkpoint = client.hgetall(keys.rewards_relay)
        assert published and checkpoint["id"] == max(
            (p.outbox_id for p in published), key=stream_id
        )
        assert int(checkpoint["offset"]) >= published[-1].offset + 1
    finally:
        publisher.close()
        await redis.aclose()
        client.close()

    # every kill left transitions after the checkpoint; the next relay found the commit of a
    # kill between commit and checkpoint on the topic, and nothing of a kill in an open
    # transaction (its init_transactions aborted it)
    recovered = [
        RECOVERED in (w.proc.log_path.read_text() if w.proc.log_path else "") for w in workers
    ]
    for life, kill in enumerate(kills):
        kill["recovered"] = recovered[life + 1]
    assert len(kills) == KILLS and all(k["behind"] > 0 for k in kills), kills
    assert all(
        k["recovered"] == (k["mode"] == "committed") for k in kills if k["mode"] != "pending"
    ), kills
    assert len(everything) - len(published) >= sum(k["mode"] == "open" for k in kills)
    # the shop is the intended one: rewards of every kind, some earned and withdrawn again
    held = oracle.rewards()
    assert {r.status for r in held.values()} == {"earned", "redeemed"}
    assert sum(1 for n in emitted.values() if n >= 2) >= 3
    print(
        f"seed {seed}: {len(events)} events ({len(events) - len(base)} duplicates), "
        f"{len(published)} reward events ({len(everything) - len(published)} more aborted) of "
        f"{len(emitted)} rewards; {len(kills)} SIGKILLs "
        f"(mode, at s, events sent, outbox entries after the checkpoint, next relay recovered "
        f"a lost checkpoint): {[tuple(k.values()) for k in kills]}; converged and drained "
        f"{settled:.1f}s after the last event, {took:.1f}s in all"
    )


if __name__ == "__main__":
    pausing_worker()
