"""A Redis Cluster master is SIGKILLed while the counter store writes purchases into it (#16):
after its replica takes over, every purchase of an acknowledged batch is counted exactly once.

Two writers play the stream worker's write path without Kafka: batches of purchases (with
redeliveries of earlier ones, as a consumer sees after a rebalance) go through
:class:`services.counters.store.CounterStore` (12 shards, ``contracts/layout.py``), one on the
cluster client the services use (:func:`socialproof.redis.connect_store`, whose retries span
10 s, longer than a failover), one on a client that gives up after 0.5 s, so that its batch
calls raise during the failover and are applied again whole, as the worker's retry loop does
(shards whose script ran before the kill run it again). The master serving the shard of one of
the products being bought is SIGKILLed; once its replica took over, the killed node is started
again (as Kubernetes restarts a pod) and comes back as that replica's replica. Afterwards each
product's buyers (every bought window), trend buckets, feed and order quantities in its shard
equal what the acknowledged purchases make (the oracle): a lost write or a script applied twice
shows as a wrong count. The test runs three times in a row on the session's cluster, as the
issue's "done when" asks.

**A batch is acknowledged only once the replicas have it** (:func:`wait_replicated`: ``WAIT 1``
on each master after the batch's scripts). Redis replicates asynchronously: a master answers a
script before its replica has the writes, and a master killed in between takes them along. Without
that wait this test lost the batch in flight at the kill in 2 of some 55 runs (its scripts
answered 18 ms after the SIGKILL was sent; none of its 20 orders in the promoted replica): the
stream worker, which commits its Kafka offsets once ``CounterStore.apply`` returns, would lose
such events for good.
The price: a master whose replica is gone acknowledges nothing until one is back, so the
writers wait for the killed node's restart, not only for the promotion.

Measured on this machine (2 shared cores, load 3.5-5.5 from other tests, 2 s
``cluster-node-timeout``, 24 runs in 8 sessions): the replica took over 3.5-4.7 s after the kill
and the killed node was back as its replica 3.7-5.9 s after it; the writers' longest wait was
3.8-6.3 s on the services' client (0-1 attempts raised: the replication wait asking the former
master, dead or back as a replica, before the client saw the new slot map) and 4.0-6.3 s on the
0.5 s client (1-4 attempts raised and were retried whole); 400-480 distinct purchases a run,
5-7 s a run, 20-23 s for the file with the cluster's start (28 s under load 5).

**End to end** (the issue's fault test): shoppers post orders to a real orders service while a
real ``socialproof worker`` counts them (both given only a cluster node as ``REDIS_URL``; the
session's broker under topics of the test's own); a master serving some of the products is
SIGKILLed mid-flow, its replica takes over, the node is restarted; once the worker caught up,
every order answered 201 is counted exactly once, checked as above. Half the shoppers send an
Idempotency-Key, whose record the orders service keeps on the cluster: an order whose record's
slot is on the dead master waits or is answered 503, and is sent again with the same key until
answered 201 (a second publication would count twice); the others' orders need no Redis and
flow through the failover. The worker's retries carry its batches
over the failover, and it commits a batch only once a replica of each master it wrote has it
(``CounterStore.confirm_replicated``, the same wait as above; its deterministic test is
``test_cluster_replication.py``). Measured (4 runs under load 6-8, and 5
earlier ones without keys): the replica took over 3.3-3.9 s after the kill and the worker wrote
the killed master's products again 4.1-4.9 s after it; 500-1,344 orders accepted a run (74-160
with a key), the slowest answer 3.3-4.4 s (a keyed order whose record is on the dead master waits
for the promotion: the services' client retries for 10 s, so none was answered 503); the store
was exactly at the oracle 0.1-0.3 s after the last order; 12-19 s a run. The whole file: 37-49 s
under load 6-8.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts import events as ev
from contracts import namespaces
from contracts.layout import CLUSTER_SHARDS, StoreLayout, layout_field
from contracts.views import BOUGHT_WINDOWS_MS, FEED_KEEP, HOUR_MS, TRENDING_WEIGHTS
from services.counters.oracle import Oracle
from services.counters.store import CounterStore
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.redis import connect_store
from socialproof.settings import Settings
from tests.conftest import SERVICE_TOKEN as TOKEN
from tests.integration.test_processor_support import ARTIFACTS, start_worker
from tests.support.backends import FAST_FAILOVER_ENV
from tests.support.rediscluster import ClusterUnderTest, drop_namespaces
from tests.support.storefront import product, publish
from tools.devstack import wait_ready, wait_worker_assigned

pytestmark = pytest.mark.integration

#: how long a test waits for a replica to take over (3.6-4.9 s here with a 2 s node timeout)
PROMOTION_DEADLINE_S = 20.0
#: the impatient writer's client gives up a command after this long (the services': 10 s)
IMPATIENT_DEADLINE_S = 0.5
#: how long a batch's acknowledgement waits for the replicas (WAIT 1 <ms>)
REPLICATION_TIMEOUT_MS = 2000
#: purchases per batch, and the share of a batch that redelivers earlier purchases
BATCH = 20
REDELIVERED = 0.1
#: batches acknowledged before the kill, and after the replica took over, before the writer stops
BEFORE_KILL, AFTER_PROMOTION = 5, 5
PRODUCTS, USERS = 24, 60
#: the end-to-end test: products, concurrent shoppers, orders accepted before the kill and after
#: the failover
E2E_PRODUCTS, SHOPPERS, E2E_BEFORE_KILL, E2E_AFTER = 12, 4, 60, 60
#: the event time of the first purchase; the purchases are spread over the three hours after it
AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


class NotReplicated(Exception):
    """A master's replica did not acknowledge the writes before them within the timeout."""


async def wait_replicated(
    client: AsyncRedisCluster,
    prefixes: tuple[str, ...],
    connections: dict[str, aioredis.Redis],
    timeout_ms: int = REPLICATION_TIMEOUT_MS,
) -> None:
    """Until every master serving one of ``prefixes`` has its writes so far acknowledged by a
    replica: a marker written in one of its shards, then ``WAIT 1`` on that same connection
    (``WAIT`` waits for the connection's own last write, whose replication offset is past every
    write the master applied before it). Raises when a master is gone, no longer serves the
    shard (MOVED) or its replica does not answer within ``timeout_ms``."""
    on_master: dict[str, tuple[ClusterNode, str]] = {}
    for prefix in prefixes:
        node = client.get_node_from_key(f"{prefix}:erased")
        on_master.setdefault(node.name, (node, prefix))
    for name, (node, prefix) in on_master.items():
        conn = connections.get(name)
        if conn is None:
            conn = connections[name] = aioredis.Redis(
                host=node.host, port=node.port, socket_timeout=5.0, socket_connect_timeout=2.0
            )
        await conn.set(f"{prefix}:replicated", 1)
        if (acked := await conn.wait(1, timeout_ms)) < 1:
            raise NotReplicated(f"{name}: {acked} replicas acknowledged in {timeout_ms} ms")


@dataclass
class Writer:
    """Applies batches through the counter store, retrying a failed one until it succeeds."""

    store: CounterStore
    rng: random.Random
    products: list[str]
    #: the start of this writer's order ids
    prefix: str
    #: every purchase of an acknowledged batch (redeliveries included, as they were sent)
    acknowledged: list[ev.Event] = field(default_factory=list)
    #: monotonic time each batch was acknowledged
    acked_at: list[float] = field(default_factory=list)
    #: errors of batch calls that raised (each was retried)
    errors: list[str] = field(default_factory=list)
    orders: int = 0
    #: order id -> when the batch that first carried it was acknowledged (for the report)
    order_acked_at: dict[str, float] = field(default_factory=dict)
    #: the namespace's shard prefixes, and a connection to each master (``wait_replicated``)
    prefixes: tuple[str, ...] = ()
    confirmers: dict[str, aioredis.Redis] = field(default_factory=dict)

    def purchase(self) -> ev.Event:
        self.orders += 1
        lines = [
            {"product_id": p, "quantity": self.rng.randint(1, 3), "unit_price": "4.50"}
            for p in self.rng.sample(self.products, self.rng.randint(1, 3))
        ]
        body = {
            "order_id": f"o{self.prefix}-{self.orders}",
            "user_id": f"u{self.rng.randrange(USERS)}",
            "currency": "EUR",
            "lines": lines,
        }
        at = AT + timedelta(seconds=self.rng.randrange(3 * 3600))
        event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return ev.PurchaseCompleted.create(body, producer="test", occurred_at=at, event_id=event_id)

    def batch(self) -> list[ev.Event]:
        out = [self.purchase() for _ in range(BATCH)]
        for _ in range(int(BATCH * REDELIVERED)):
            if self.acknowledged:
                out.insert(self.rng.randrange(len(out)), self.rng.choice(self.acknowledged))
        return out

    async def apply(self, batch: list[ev.Event]) -> None:
        delay = 0.2  # the worker's retry loop: 0.2 s doubling to 5 s, until it succeeds
        while True:
            try:
                await self.store.apply(batch)
                await wait_replicated(self.store.redis, self.prefixes, self.confirmers)
                break
            except Exception as exc:  # noqa: BLE001 — retried, and listed in the report
                self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.acknowledged += batch
        self.acked_at.append(time.monotonic())
        for e in batch:
            self.order_acked_at.setdefault(e.payload.order_id, self.acked_at[-1])

    def acked_since(self, moment: float | None) -> int:
        return 0 if moment is None else sum(t > moment for t in self.acked_at)

    async def run(self, promoted: list[float]) -> None:
        """Write until :data:`AFTER_PROMOTION` batches were acknowledged after the moment the
        test appends to ``promoted``."""
        while self.acked_since(promoted[0] if promoted else None) < AFTER_PROMOTION:
            await self.apply(self.batch())


def expected_state(events: list[ev.Event]) -> tuple[Oracle, dict, dict, dict]:
    """The oracle, and per product: orders by event hour, order quantities, and orders."""
    oracle = Oracle(events)
    unique = {e.event_id: e for e in events}.values()
    by_hour: dict[str, Counter[int]] = defaultdict(Counter)
    quantities: dict[str, dict[str, int]] = defaultdict(dict)
    for e in unique:
        ms = int(e.occurred_at.timestamp() * 1000)
        for line in e.payload.lines:
            by_hour[line.product_id][ms // HOUR_MS] += 1
            quantities[line.product_id][e.payload.order_id] = line.quantity
    return oracle, by_hour, quantities, {p: len(q) for p, q in quantities.items()}


async def mismatches(
    client: AsyncRedisCluster,
    layout: StoreLayout,
    products: list[str],
    events: list[ev.Event],
    now_ms: int = int((AT + timedelta(hours=3)).timestamp() * 1000),
) -> list[str]:
    """Every difference between the products' views in their shards and the oracle (bought
    windows as of ``now_ms``)."""
    oracle, by_hour, quantities, orders = expected_state(events)
    problems = []
    for p in products:
        keys = layout.product_keys(p)
        want = oracle.bought(p, now_ms)
        got = {
            label: await client.zcount(keys.buyers(p), now_ms - window, "+inf")
            for label, window in BOUGHT_WINDOWS_MS.items()
        }
        if got != want:
            problems.append(f"{p} bought: store {got} != oracle {want}")
        for hour, count in sorted(by_hour[p].items()):
            score = await client.zscore(keys.trend_bucket(hour), p)
            if score != TRENDING_WEIGHTS["bought"] * count:
                problems.append(f"{p} trend hour {hour}: {score} != 3 x {count} orders")
        want_feed = min(orders.get(p, 0), FEED_KEEP)  # the newest FEED_KEEP are kept
        if (feed := await client.zcard(keys.feed(p))) != want_feed:
            problems.append(f"{p} feed: {feed} entries != {want_feed} (orders, at most kept)")
        pipe = client.pipeline(transaction=False)
        for order in quantities[p]:
            pipe.hget(keys.order(order), f"q:{p}")
        stored = await pipe.execute()
        for (order, quantity), got_q in zip(quantities[p].items(), stored, strict=True):
            if got_q is None or int(got_q) != quantity:
                problems.append(f"{p} order {order}: quantity {got_q} != {quantity}")
    return problems


def stall_after(acked_at: list[float], killed_at: float) -> tuple[float, float]:
    """The longest wait between two acknowledgements around and after the kill, and when (after
    the kill) the batch that ended it was acknowledged."""
    times = [t for t in acked_at if t <= killed_at][-1:] + [t for t in acked_at if t > killed_at]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    longest = max(gaps)
    return longest, times[gaps.index(longest) + 1] - killed_at


#: store-level runs in a row: one in the suite (its time budget); #16's "three runs in a row" is
#: SOCIALPROOF_FAILOVER_RUNS=3 (the session note says when it was run)
FAILOVER_RUNS = int(os.environ.get("SOCIALPROOF_FAILOVER_RUNS", "1"))


@pytest.mark.parametrize("run", range(1, FAILOVER_RUNS + 1))
async def test_a_masters_sigkill_while_purchases_are_written_loses_and_doubles_nothing(
    redis_cluster: ClusterUnderTest,  # noqa: F811
    run: int,
) -> None:
    cluster = redis_cluster.require_local()
    await asyncio.to_thread(cluster.wait_healthy, PROMOTION_DEADLINE_S)  # a full cluster
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    layout = StoreLayout(f"fo{tag}", CLUSTER_SHARDS)
    products = [f"p{tag}-{i}" for i in range(PRODUCTS)]
    # Given a 12-shard namespace on the cluster and two writers of purchases of the same
    # products: one on the client the services use (its retries span 10 s, longer than a
    # failover), one on a client that gives up after 0.5 s, so its batch calls raise during
    # the failover and are applied again whole (shards that took them before the kill included)
    settings = Settings(redis_url=cluster.url)
    clients = [
        await connect_store(settings),
        await connect_store(settings, failover_deadline=IMPATIENT_DEADLINE_S),
    ]
    assert all(isinstance(c, AsyncRedisCluster) for c in clients), f"{cluster.url}: no cluster"
    await clients[0].hset(
        namespaces.pointer_key(layout.namespace), layout_field(layout.namespace), CLUSTER_SHARDS
    )
    writers = [
        Writer(
            CounterStore(client, layout.namespace, coupon_secret="test-secret"),
            random.Random(rng.random()),
            products,
            f"{run}{tag}{name}",
            prefixes=layout.prefixes,
        )
        for client, name in zip(clients, "wi", strict=True)
    ]
    # And the master serving the shard of one of the products bought, which holds the shards
    # of other products bought too (12 shards over 3 masters)
    victim = cluster.master_for(f"{layout.product_prefix(rng.choice(products))}:erased")
    on_victim = [p for p in products if cluster.master_for(layout.product_prefix(p)) is victim]
    assert len(on_victim) >= 2, on_victim
    its_replicas = cluster.replicas_of(victim)
    promoted_at: list[float] = []  # when the replica took over: each writer stops a bit after
    writing = [asyncio.create_task(w.run(promoted_at)) for w in writers]

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            for task in writing:
                if task.done():
                    task.result()  # a writer that died: its error
                    raise AssertionError("a writer stopped")
            assert time.monotonic() < deadline, f"{what} within 30 s"
            await asyncio.sleep(0.01)

    try:
        # When both writers have acknowledged some batches, the master is SIGKILLed
        await until(
            lambda: all(len(w.acked_at) >= BEFORE_KILL for w in writers),
            f"{BEFORE_KILL} batches of each writer",
        )
        killed_at = time.monotonic()
        cluster.kill(victim)
        promoted = await asyncio.to_thread(cluster.wait_promoted, victim, PROMOTION_DEADLINE_S)
        promoted_at.append(time.monotonic())
        # and, once its replica took over, the killed node is started again (as Kubernetes
        # restarts a pod): it comes back as the new master's replica, and until then that
        # master has none to acknowledge the writers' batches. On this thread: a node dies with
        # the thread that started it (processes.py)
        cluster.restart(victim, PROMOTION_DEADLINE_S)
        restarted_at = time.monotonic()
        # and the writers go on until each has acknowledged more batches after the promotion
        await asyncio.wait_for(asyncio.gather(*writing), 30)
        # Then the replica serves the killed master's slots
        assert promoted in its_replicas
        # And both writers were held up by the failover (their batches touch the victim's
        # shards), then went on; the impatient one's calls raised and were retried: the test
        # met the fault on both paths
        stalls = [stall_after(w.acked_at, killed_at) for w in writers]
        assert all(stall > 1.0 for stall, _ in stalls), f"no writer waited: {stalls}"
        patient, impatient = writers
        assert impatient.errors, "no batch call of the impatient writer raised"
        # And every acknowledged purchase is counted exactly once in its product's shard
        acknowledged = patient.acknowledged + impatient.acknowledged
        problems = await mismatches(clients[0], layout, products, acknowledged)
        if problems:
            acked = {o: t - killed_at for w in writers for o, t in w.order_acked_at.items()}
            lost = sorted(
                {
                    (round(acked[o], 3), o)
                    for line in problems
                    if " order " in line
                    for o in [line.split(" order ")[1].split(":")[0]]
                }
            )
            raise AssertionError(
                f"{len(problems)} differences; orders lost (acknowledged s after the kill): "
                f"{lost[:10]}\n" + "\n".join(problems[:20])
            )
        print(
            f"\nrun {run} (seed {seed}): killed redis-{victim.port} "
            f"({len(on_victim)} of {PRODUCTS} products), redis-{promoted.port} serving and "
            f"the cluster ok {promoted_at[0] - killed_at:.1f}s after the kill, the killed node back "
            f"as its replica {restarted_at - killed_at:.1f}s after it; writers stalled "
            f"{stalls[0][0]:.1f}s (services' client, {len(patient.errors)} calls raised "
            f"{patient.errors[:1]}) and "
            f"{stalls[1][0]:.1f}s (0.5 s client, {len(impatient.errors)} calls raised and "
            f"retried, e.g. {impatient.errors[0][:120]!r}); "
            f"{[len(w.acked_at) for w in writers]} batches, {len(acknowledged)} purchases "
            f"acknowledged ({len({e.event_id for e in acknowledged})} distinct)"
        )
    finally:
        for task in writing:
            task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
        for client in clients:
            await client.aclose()
        for writer in writers:
            for conn in writer.confirmers.values():
                await conn.aclose()
        if not victim.running:  # back as a replica of its successor, for the next run; on
            # this thread: a node dies with the thread that started it (processes.py)
            cluster.restart(victim, PROMOTION_DEADLINE_S)
        await asyncio.to_thread(drop_namespaces, cluster.url, layout.namespace)


# --- end to end: orders API -> Kafka -> the stream worker -> the cluster ------------------------


@dataclass
class Shopper:
    """Posts orders to the orders API and keeps each accepted one as its event. With ``keyed``,
    each order carries an Idempotency-Key, as a careful client does: answered 503 (or not
    answered), it is sent again with the same key until it is answered 201."""

    http: httpx.AsyncClient
    url: str
    products: list[str]
    rng: random.Random
    keyed: bool
    accepted: list[ev.Event] = field(default_factory=list)
    #: when each accepted order was answered (monotonic)
    accepted_at: list[float] = field(default_factory=list)
    #: the 503s and unanswered attempts, sent again
    retried: list[str] = field(default_factory=list)
    #: (status, body) of any other answer (the test fails on them)
    refused: list[tuple[int, str]] = field(default_factory=list)
    slowest_s: float = 0.0

    async def post(self, body: dict, key: str | None) -> httpx.Response | None:
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {TOKEN}", **({"Idempotency-Key": key} if key else {})}
        try:
            response = await self.http.post(f"{self.url}/v1/orders", json=body, headers=headers)
        except httpx.TransportError as exc:
            if key is None:
                raise  # without a key an order cannot be sent again safely
            self.retried.append(f"{type(exc).__name__}: {exc}")
            return None
        finally:
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
        if response.status_code == 503 and key is not None:
            self.retried.append(f"503 {response.text[:200]}")
            return None
        return response

    async def order(self) -> None:
        lines = [
            {"product_id": p, "quantity": self.rng.randint(1, 3), "unit_price": "19.99"}
            for p in self.rng.sample(self.products, self.rng.randint(1, 2))
        ]
        body = {"user_id": f"u{self.rng.randrange(USERS)}", "currency": "EUR", "lines": lines}
        key = f"fo-{uuid.UUID(int=self.rng.getrandbits(128), version=4)}" if self.keyed else None
        deadline = time.monotonic() + 60
        while (response := await self.post(body, key)) is None:
            assert time.monotonic() < deadline, f"an order was not accepted in 60 s: {body}"
            await asyncio.sleep(0.2)
        if response.status_code != 201:
            self.refused.append((response.status_code, response.text[:300]))
            return
        got = response.json()
        self.accepted.append(
            ev.PurchaseCompleted.create(
                {k: got[k] for k in ("order_id", "user_id", "currency")}
                | {
                    "lines": [
                        {k: x[k] for k in ("product_id", "quantity", "unit_price")}
                        for x in got["lines"]
                    ]
                },
                producer="orders",
                event_id=uuid.UUID(got["event_id"]),
                occurred_at=datetime.fromisoformat(got["occurred_at"]),
            )
        )
        self.accepted_at.append(time.monotonic())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.order()


async def test_a_masters_sigkill_while_orders_flow_counts_every_accepted_order_once(
    redis_cluster: ClusterUnderTest,  # noqa: F811
    own_topics: Settings,
) -> None:
    cluster = redis_cluster.require_local()
    await asyncio.to_thread(cluster.wait_healthy, PROMOTION_DEADLINE_S)
    seed = random.randrange(1 << 30)
    tag = uuid.uuid4().hex[:8]
    namespace, products = f"foe{tag}", [f"p{tag}-{i}" for i in range(E2E_PRODUCTS)]
    settings = own_topics.model_copy(update={"redis_url": cluster.url})
    # Given the products in the catalog, and the orders service and a stream worker whose
    # REDIS_URL names a node of the cluster (nothing else tells them it is one)
    publish(settings, *(product(p) for p in products))
    worker = start_worker(settings, namespace, f"g-fo-{tag}", "worker-fo", wait=False)
    port = free_port()
    orders = ManagedProcess(
        "orders-fo",
        service_argv("orders"),
        env={
            **FAST_FAILOVER_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "SOCIALPROOF_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
            "REDIS_URL": cluster.url,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_SERVICE_TOKEN": TOKEN,
            "SOCIALPROOF_ORDERS_PORT": str(port),
            "SOCIALPROOF_RATE_LIMIT_PER_S": "1000000",
            "SOCIALPROOF_RATE_LIMIT_BURST": "1000000",
        },
        echo=False,
        log_path=ARTIFACTS / f"orders-fo-{tag}.log",
    ).start()
    client = await connect_store(Settings(redis_url=cluster.url))
    stop = asyncio.Event()
    shoppers: list[Shopper] = []
    posting: list[asyncio.Task] = []
    victim = None
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", 60, "the orders service", orders)
        wait_worker_assigned(f"{worker.url}/readyz", 90, worker.proc)
        layout = StoreLayout(namespace, CLUSTER_SHARDS)  # what the worker records on a cluster
        # And a master serving the shard of some of the products
        rng = random.Random(seed)
        victim = cluster.master_for(f"{layout.product_prefix(rng.choice(products))}:erased")
        on_victim = [p for p in products if cluster.master_for(layout.product_prefix(p)) is victim]
        async with httpx.AsyncClient(timeout=30) as http:
            shoppers = [
                Shopper(
                    http, f"http://127.0.0.1:{port}", products, random.Random(rng.random()), keyed
                )
                for keyed in [True, False] * (SHOPPERS // 2)
            ]
            posting = [asyncio.create_task(s.run(stop)) for s in shoppers]

            async def accepted(at_least: int, what: str) -> None:
                deadline = time.monotonic() + 60
                while sum(len(s.accepted) for s in shoppers) < at_least:
                    for task in posting:
                        if task.done():
                            task.result()
                    orders.ensure_alive()
                    assert time.monotonic() < deadline, f"{what} within 60 s"
                    await asyncio.sleep(0.01)

            async def written_again(killed_at: float) -> float:
                """Seconds from the kill until the store has the first order of the killed
                master's products accepted after it (how long the worker could not write)."""
                deadline = killed_at + 60
                while True:
                    assert time.monotonic() < deadline, "the worker did not write again in 60 s"
                    first = next(
                        (
                            (e.payload.order_id, x.product_id)
                            for s in shoppers
                            for e, at in zip(s.accepted, s.accepted_at, strict=False)
                            for x in e.payload.lines
                            if at > killed_at and x.product_id in on_victim
                        ),
                        None,
                    )
                    if first is not None:
                        key = layout.product_keys(first[1]).order(first[0])
                        if await client.hexists(key, f"q:{first[1]}"):
                            return time.monotonic() - killed_at
                    await asyncio.sleep(0.02)

            # When orders flow and the worker has counted some of them
            await accepted(E2E_BEFORE_KILL, f"{E2E_BEFORE_KILL} orders accepted")
            deadline = time.monotonic() + 60
            while not await client.exists(layout.product_keys(on_victim[0]).buyers(on_victim[0])):
                worker.proc.ensure_alive()
                assert time.monotonic() < deadline, "the worker counted nothing within 60 s"
                await asyncio.sleep(0.05)
            # the master is SIGKILLed mid-flow, its replica takes over, the node is restarted
            before_kill = sum(len(s.accepted) for s in shoppers)
            killed_at = time.monotonic()
            cluster.kill(victim)
            resuming = asyncio.create_task(written_again(killed_at))
            promoted = await asyncio.to_thread(cluster.wait_promoted, victim, PROMOTION_DEADLINE_S)
            promoted_s = time.monotonic() - killed_at
            resumed_s = await resuming
            cluster.restart(victim, PROMOTION_DEADLINE_S)  # on this thread (processes.py)
            # and orders go on flowing for a while after
            after = sum(len(s.accepted) for s in shoppers) + E2E_AFTER
            await accepted(after, f"{E2E_AFTER} more orders accepted after the failover")
            stop.set()
            await asyncio.gather(*posting)
            last_order_at = time.monotonic()
        # Then every order was answered 201, at once or after 503s sent again with its key
        refused = [r for s in shoppers for r in s.refused]
        assert not refused, refused[:5]
        retried = [r for s in shoppers for r in s.retried]
        accepted_events = [e for s in shoppers for e in s.accepted]
        # And some of them, accepted while the master was down, are of its products: the worker
        # had to write them through the failover
        during = [
            e
            for s in shoppers
            for e, at in zip(s.accepted, s.accepted_at, strict=True)
            if killed_at < at < killed_at + promoted_s
            and any(x.product_id in on_victim for x in e.payload.lines)
        ]
        assert during, "no order of the killed master's products came during the failover"
        # And once the worker caught up, every accepted order is counted exactly once: each
        # product's buyers, trend buckets, feed and order quantities are what they make
        now_ms = int(time.time() * 1000)
        deadline = time.monotonic() + 60
        while problems := await mismatches(client, layout, products, accepted_events, now_ms):
            worker.proc.ensure_alive()
            assert time.monotonic() < deadline, (
                f"{len(problems)} differences 60 s after the last order (an order whose "
                "quantity is None is missing: a batch the worker acknowledged before its "
                "master's replica had it? see the module's docstring):\n" + "\n".join(problems[:20])
            )
            await asyncio.sleep(0.2)
        caught_up_s = time.monotonic() - last_order_at
        print(
            f"\n(seed {seed}) killed redis-{victim.port} ({len(on_victim)} of {E2E_PRODUCTS} "
            f"products), redis-{promoted.port} serving {promoted_s:.1f}s after, the worker "
            f"writing its products again {resumed_s:.1f}s after; "
            f"{len(accepted_events)} orders accepted "
            f"({sum(len(s.accepted) for s in shoppers if s.keyed)} with a key, "
            f"{before_kill} before the kill, "
            f"{len(during)} of its products during the failover), "
            f"slowest answer {max(s.slowest_s for s in shoppers):.2f}s, {len(retried)} sent again "
            f"{retried[:1]}; the store had every "
            f"one exactly once {caught_up_s:.1f}s after the last, "
            f"{time.monotonic() - killed_at:.1f}s after the kill"
        )
    finally:
        stop.set()
        for task in posting:
            task.cancel()
        await asyncio.gather(*posting, return_exceptions=True)
        await client.aclose()
        orders.stop()
        worker.stop()
        if victim is not None and not victim.running:
            cluster.restart(victim, PROMOTION_DEADLINE_S)
        await asyncio.to_thread(drop_namespaces, cluster.url, namespace)
