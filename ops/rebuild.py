"""Rebuilding every counter from the event log into a fresh Redis namespace, without downtime.

``socialproof replay rebuild [--from earliest|TIME] [--switch]`` runs these steps:

1. **replay**: a stream worker with its own consumer group and a new namespace reads the event
   topics from the start (or TIME) while the live workers keep serving the active namespace.
2. **catch up**: wait until that group has consumed every partition to its real end.
3. **hand over** (``--switch``): set the new namespace as *shadow*; live workers then write every
   batch to both namespaces (writes are idempotent facts, so twice is harmless). Once the live
   group has committed past a batch written after that moment and the replay group has reached
   the same offsets, the new namespace is complete and kept complete by the live workers.
4. **switch**: one HSET moves ``active`` to the new namespace and drops the shadow; readers move
   over atomically. The replay worker stops and its consumer group is deleted.
5. **clean up**: after a grace period the old namespace's keys are deleted.

``--shards N`` gives the new namespace N product shards (``contracts/layout.py``; default: 1 on
one Redis, 12 on a Redis Cluster), recorded beside the pointer before the replay worker starts,
so it, the live workers during the hand-over and the readers after the switch use the same
layout. This is how a namespace changes its layout (1 shard to 4 on one Redis, or the 12 a
cluster wants): rebuild, then switch. On a Redis Cluster (``REDIS_URL`` naming any node) the
scans visit every master and keys are deleted per hash slot. Dropping the base namespace keeps
what outlives it (:func:`base_keys`): its rewards outbox, the relay's checkpoint, the pointer and
the services' idempotency records. Measured on a 3-master cluster (dev stack): dropping a
12-shard namespace of 18,640 keys took 2.7 s.

Interrupted before the switch (Ctrl-C, an error), it undoes itself: shadow cleared, replay worker
stopped, partial namespace and consumer group deleted. After the switch only the clean-up is
left; ``socialproof replay drop NS`` finishes it. Nothing is ever half-switched.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis as redis_sync
from redis.crc import key_slot

from contracts import namespaces
from contracts.layout import default_shards, layout_field, outbox_prefix, parse_shards
from contracts.topics import PROCESSOR_TOPICS
from ops import topics
from socialproof.kafka import topic_name
from socialproof.processes import ManagedProcess, free_port, worker_argv
from socialproof.redis import connect_store_sync
from socialproof.settings import Settings

Report = Callable[[str], None]
Progress = Callable[[int, int], None]


class RebuildError(RuntimeError):
    pass


def connect(settings: Settings) -> redis_sync.Redis | redis_sync.RedisCluster:
    """The store's client: a cluster client when REDIS_URL names a Redis Cluster node (its
    scans visit every master), else the plain one."""
    return connect_store_sync(settings.redis_url, decode_responses=True, socket_timeout=10)


def is_cluster_client(client: redis_sync.Redis | redis_sync.RedisCluster) -> bool:
    return isinstance(client, redis_sync.RedisCluster)


def current(settings: Settings, client: redis_sync.Redis) -> namespaces.Namespaces:
    return namespaces.parse(client.hgetall(namespaces.pointer_key(settings.redis_namespace)), settings.redis_namespace)


def new_namespace_name(base: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%y%m%d%H%M%S")
    root = base.split("-r")[0][:16]
    return f"{root}-r{stamp}"


def namespace_keys(client: redis_sync.Redis, ns: str) -> Iterator[str]:
    return client.scan_iter(match=f"{ns}:*", count=2000)


def base_keys(base: str) -> frozenset[str]:
    """Keys under the base namespace that outlive its data: the rewards outbox, the relay's
    checkpoint and the emission counters (``contracts.layout.outbox_prefix``, on one Redis and
    on a cluster), and the live-namespace pointer. Dropping the base namespace after a switch
    keeps them: the live workers and the relay go on using them. It keeps the services'
    idempotency records (``{base}:idem:*``, socialproof/idempotency.py) too: they are not
    derived from the log, and a retried request must still find its first answer."""
    kept = {namespaces.pointer_key(base)}
    for cluster in (False, True):
        prefix = outbox_prefix(base, cluster)
        kept |= {f"{prefix}:rewards:outbox", f"{prefix}:rewards:relay", f"{prefix}:rewards:seq"}
    return frozenset(kept)


def _unlink(client: redis_sync.Redis | redis_sync.RedisCluster, keys: list[str]) -> int:
    """UNLINK ``keys``: at once on one Redis; on a cluster one UNLINK per hash slot (a
    multi-key command must not cross slots; a shard's keys share one slot, so a chunk of a
    sharded namespace costs one round trip per shard)."""
    if not is_cluster_client(client):
        return client.unlink(*keys)
    by_slot: dict[int, list[str]] = {}
    for key in keys:
        by_slot.setdefault(key_slot(key.encode()), []).append(key)
    return sum(client.unlink(*same_slot) for same_slot in by_slot.values())


def drop_namespace(client: redis_sync.Redis | redis_sync.RedisCluster, ns: str,
                   progress: Progress | None = None, base: str | None = None) -> int:
    """Delete every key of a namespace, on every master of a cluster (UNLINK, in chunks, per
    slot); returns how many. Dropping the ``base`` namespace keeps :func:`base_keys`."""
    dropping_base = base is not None and ns == base
    kept = base_keys(base) if dropping_base else frozenset()
    deleted = 0
    chunk: list[str] = []
    for key in namespace_keys(client, ns):
        if key in kept or (dropping_base and key.startswith(f"{base}:idem:")):
            continue
        chunk.append(key)
        if len(chunk) >= 1000:
            deleted += _unlink(client, chunk)
            chunk.clear()
            if progress:
                progress(deleted, deleted)
    if chunk:
        deleted += _unlink(client, chunk)
    return deleted


@dataclass
class Plan:
    old: str
    new: str
    group: str
    live_group: str
    start: datetime | None  # None: from the earliest offsets
    ends: dict[str, dict[int, int]] = field(default_factory=dict)
    #: product shards of the new namespace (contracts/layout.py), recorded before the replay
    shards: int = 1
    #: the old namespace's, as recorded (None: nothing recorded yet)
    old_shards: int | None = None

    @property
    def events(self) -> int:
        return sum(sum(parts.values()) for parts in self.ends.values())

    def describe(self) -> list[str]:
        origin = "the earliest offsets" if self.start is None else self.start.isoformat()
        was = "" if self.old_shards is None else f", was {self.old_shards}"
        return [
            f"replay {self.events} record(s) of {len(self.ends)} event topics from {origin}",
            f"into the new namespace {self.new!r} with consumer group {self.group!r}",
            f"with {self.shards} shard(s){was} (contracts/layout.py)",
            f"while live workers ({self.live_group!r}) keep serving {self.old!r}",
        ]


def plan(settings: Settings, live_group: str, start: datetime | None = None,
         client: redis_sync.Redis | redis_sync.RedisCluster | None = None,
         shards: int | None = None) -> Plan:
    """What a rebuild would do: the new namespace, its own consumer group beside the live
    workers' ``live_group``, the records to replay (each event topic's end now), and the new
    namespace's shard count (``shards``; None: the default for this store, 1 on one Redis,
    ``contracts.layout.CLUSTER_SHARDS`` on a cluster)."""
    client = client or connect(settings)
    if shards is not None and shards < 1:
        raise RebuildError(f"--shards must be at least 1, not {shards}")
    if shards == 1 and is_cluster_client(client):
        raise RebuildError(
            "--shards 1 on a Redis Cluster: one shard is the single-node layout, whose keys have "
            "no hash tag and whose script would cross slots; give 2 or more (default "
            f"{default_shards(True)})")
    raw = client.hgetall(namespaces.pointer_key(settings.redis_namespace))
    pointer = namespaces.parse(raw, settings.redis_namespace)
    if pointer.shadow:
        raise RebuildError(
            f"a rebuild into {pointer.shadow!r} is handing over right now (or was interrupted "
            f"hard): check `socialproof replay status`; clear it with `socialproof replay drop "
            f"{pointer.shadow}`")
    new = new_namespace_name(pointer.active)
    if next(iter(namespace_keys(client, new)), None) is not None:
        raise RebuildError(f"namespace {new!r} is not empty")
    names = [topic_name(settings, t) for t in PROCESSOR_TOPICS]
    ends = {name: topics.true_end_offsets(settings, name) for name in names}
    return Plan(old=pointer.active, new=new, group=f"{live_group}-{new}",
                live_group=live_group, start=start, ends=ends,
                shards=shards or default_shards(is_cluster_client(client)),
                old_shards=parse_shards(raw, pointer.active))


def group_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """A group's committed offsets on the event topics (0 where it committed nothing)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    names = {topic_name(settings, t) for t in PROCESSOR_TOPICS}
    adm = topics.admin(settings)  # kept alive until the future resolves
    result = adm.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=10)[group].result()
    return {(tp.topic, tp.partition): max(tp.offset, 0)
            for tp in result.topic_partitions or [] if tp.topic in names}


def _reached(settings: Settings, group: str, targets: dict[tuple[str, int], int]) -> int:
    """How many records of ``targets`` the group has passed (committed offsets)."""
    offsets = group_offsets(settings, group)
    return sum(min(offsets.get(tp, 0), end) for tp, end in targets.items())


@dataclass
class Result:
    plan: Plan
    switched: bool
    replayed: int
    seconds: float
    old_keys_deleted: int | None = None

    @property
    def rate(self) -> float:
        return self.replayed / self.seconds if self.seconds > 0 else 0.0


class Rebuild:
    """One rebuild run; ``run`` is the whole procedure, with undo on interruption."""

    def __init__(self, settings: Settings, the_plan: Plan, *, report: Report = print,
                 progress: Progress | None = None, handover_s: float = 5.0,
                 grace_s: float = 60.0, worker_log: str | None = None) -> None:
        self.settings = settings
        self.plan = the_plan
        self.report = report
        self.progress = progress
        self.handover_s = handover_s
        self.grace_s = grace_s
        self.worker_log = worker_log
        self.client = connect(settings)
        self.pointer = namespaces.pointer_key(settings.redis_namespace)
        self.replay_pointer = namespaces.pointer_key(the_plan.new)
        self.worker: ManagedProcess | None = None
        self.switched = False

    def _start_worker(self) -> None:
        from pathlib import Path

        # The layout first, where readers and live workers read it (the base pointer) and where
        # the replay worker does: its store's namespace is the new one, so it reads the pointer
        # hash named after it (removed again when the replay worker stops).
        for pointer in (self.pointer, self.replay_pointer):
            self.client.hset(pointer, layout_field(self.plan.new), self.plan.shards)
        if self.plan.start is not None:
            # A new group starts where we put it: at the first record at or after --from.
            topics.reset_group(self.settings, self.plan.group,
                                 list(self.plan.ends), self.plan.start)
        env = {
            "SOCIALPROOF_REDIS_NAMESPACE": self.plan.new,
            "SOCIALPROOF_WORKER_CONSUMER_GROUP": self.plan.group,
            # the topics the plan measured, whatever the worker's own environment says
            "SOCIALPROOF_KAFKA_TOPIC_PREFIX": self.settings.kafka_topic_prefix,
            "SOCIALPROOF_WORKER_WEB_PORT": str(free_port()),
            # The replay writes its own namespace only and announces nothing to readers.
            "SOCIALPROOF_WORKER_FOLLOW_ACTIVE": "false",
        }
        self.worker = ManagedProcess(
            "replay-worker", worker_argv(), env=env, echo=False,
            log_path=Path(self.worker_log) if self.worker_log else None,
        ).start()

    def _wait_for(self, targets: dict[tuple[str, int], int], what: str,
                  timeout: float | None = None) -> None:
        total = sum(targets.values())
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            assert self.worker is not None
            self.worker.ensure_alive()
            done = _reached(self.settings, self.plan.group, targets)
            if self.progress:
                self.progress(done, total)
            if done >= total:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise RebuildError(f"timed out waiting for {what}")
            time.sleep(0.5)

    def run(self, switch: bool) -> Result:
        started = time.monotonic()
        try:
            self._start_worker()
            targets = {(topic, p): end for topic, parts in self.plan.ends.items()
                       for p, end in parts.items()}
            self.report(f"replaying into {self.plan.new} …")
            self._wait_for(targets, "the replay to catch up")
            replayed = sum(targets.values())
            seconds = time.monotonic() - started
            self.report(f"caught up: {replayed} record(s) in {seconds:.1f}s "
                        f"({replayed / max(seconds, 1e-9):,.0f}/s)")
            if switch:
                self._hand_over_and_switch()
            self._stop_worker()
            if switch:
                deleted = self._cleanup_old()
                return Result(self.plan, True, replayed, seconds, deleted)
            self.report(f"namespace {self.plan.new} is ready and NOT live; switch by running "
                        f"the rebuild with --switch, or remove it with `socialproof replay drop "
                        f"{self.plan.new}`")
            return Result(self.plan, False, replayed, seconds)
        except BaseException:
            if not self.switched:
                self._undo()
            raise

    def _hand_over_and_switch(self) -> None:
        self.client.hset(self.pointer, "shadow", self.plan.new)
        self.report(f"live workers now also write {self.plan.new}; waiting {self.handover_s}s "
                    "for batches in flight")
        time.sleep(self.handover_s)  # batches that began before the shadow was set finish
        live = group_offsets(self.settings, self.plan.live_group)
        self.report("waiting for the replay to reach the live workers' offsets")
        self._wait_for(live, "the replay to reach the live offsets")
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.pointer, mapping={
            "active": self.plan.new, "previous": self.plan.old,
            "switched_at": datetime.now(UTC).isoformat()})
        pipe.hdel(self.pointer, "shadow")
        pipe.execute()
        self.switched = True
        self.report(f"switched: readers now use {self.plan.new} (was {self.plan.old})")

    def _stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.client.delete(self.replay_pointer)
        with contextlib.suppress(Exception):
            adm = topics.admin(self.settings)
            adm.delete_consumer_groups([self.plan.group], request_timeout=10)[
                self.plan.group].result()

    def _cleanup_old(self) -> int | None:
        self.report(f"old namespace {self.plan.old} is deleted in {self.grace_s:.0f}s "
                    "(readers may still hold it until then)")
        try:
            time.sleep(self.grace_s)
        except KeyboardInterrupt:
            self.report(f"interrupted: {self.plan.old} kept; remove it with "
                        f"`socialproof replay drop {self.plan.old}`")
            return None
        deleted = drop_namespace(self.client, self.plan.old,
                                 base=self.settings.redis_namespace)
        self.client.hdel(self.pointer, layout_field(self.plan.old))
        self.report(f"deleted {deleted} key(s) of {self.plan.old}")
        return deleted

    def _undo(self) -> None:
        print("rebuild interrupted: undoing (nothing was switched)", file=sys.stderr)
        with contextlib.suppress(Exception):
            pointer = current(self.settings, self.client)
            if pointer.shadow == self.plan.new:
                self.client.hdel(self.pointer, "shadow")
        with contextlib.suppress(Exception):
            self._stop_worker()
        with contextlib.suppress(Exception):
            drop_namespace(self.client, self.plan.new)
            self.client.hdel(self.pointer, layout_field(self.plan.new))


def status(settings: Settings) -> dict[str, object]:
    client = connect(settings)
    raw = client.hgetall(namespaces.pointer_key(settings.redis_namespace))
    pointer = namespaces.parse(raw, settings.redis_namespace)
    found: dict[str, int] = {}
    for key in client.scan_iter(count=5000):
        ns = key.split(":", 1)[0]
        if ns != "socialproof":
            found[ns] = found.get(ns, 0) + 1
    shards = {field_.split(":", 1)[1]: int(value) for field_, value in raw.items()
              if field_.startswith("shards:")}
    return {"active": pointer.active, "shadow": pointer.shadow,
            "previous": raw.get("previous"), "switched_at": raw.get("switched_at"),
            "namespaces": found, "shards": shards}


def drop(settings: Settings, ns: str) -> int:
    client = connect(settings)
    pointer = current(settings, client)
    if ns == pointer.active:
        raise RebuildError(f"{ns!r} is the active namespace: switch away from it first")
    key = namespaces.pointer_key(settings.redis_namespace)
    if ns == pointer.shadow:
        client.hdel(key, "shadow")
    deleted = drop_namespace(client, ns, base=settings.redis_namespace)
    client.hdel(key, layout_field(ns))
    return deleted
