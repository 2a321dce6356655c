"""Support for the Kafka cluster fault tests (tests/reliability/test_kafka_cluster.py).

- :class:`Processes`: socialproof processes (the orders service, the stream worker) started
  against a broker of the test's own (a 3-node :class:`~tools.embeddedkafka.KafkaCluster`
  or a single dev broker) and a private redis-server, with the settings' defaults except where a
  test says otherwise.
- :class:`OrderTraffic`: orders sent to an orders service at a steady rate from a thread of its
  own, each with its own ``Idempotency-Key`` and its own buyer; an order refused with 503 is sent
  again with the same key and body until it is answered 201, as a client honouring the contract
  would. Every answer is recorded, so a test can say exactly what was acknowledged and when.
- Checks against the broker and the serving store: where partitions lead and replicate
  (:func:`partitions`), every purchase on ``orders.events`` (:func:`orders_in_topic`), and
  :func:`wait_counted`, which polls what the notifier would serve until it equals the orders
  answered 201, with a deadline.

Start processes from the test's own (long-lived) thread: children get a parent-death signal tied
to the thread that started them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from contracts import codec
from contracts.events import PurchaseCompleted
from contracts.topics import ORDERS
from contracts.views import Keys
from services.notifier.proof import ProofReader
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.support.services import topic_records
from tools.devstack import LOCAL_ENV, wait_ready, wait_worker_assigned

ROOT = Path(__file__).resolve().parents[2]
PROCESSED = "socialproof_events_processed_total"


# --- socialproof processes ----------------------------------------------------------------------


@dataclass
class Service:
    """A socialproof process and the URL it serves on."""

    proc: ManagedProcess
    url: str
    log: Path

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def log_lines(self, needle: str) -> int:
        """How many lines of its log contain ``needle``."""
        return sum(needle in line for line in self.log.read_text(errors="replace").splitlines())


@dataclass
class Processes:
    """socialproof processes against ``bootstrap`` and ``redis_url``; stopped by :meth:`stop`."""

    workdir: Path
    bootstrap: str
    redis_url: str
    token: str
    started: list[ManagedProcess] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap_servers=self.bootstrap, redis_url=self.redis_url,
                        service_token=self.token)

    def env(self, namespace: str, **extra: str) -> dict[str, str]:
        # Group timings, produce timeout etc. are the settings' defaults unless a test says
        # otherwise: those are what a real cluster is run with.
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "SOCIALPROOF_SERVICE_TOKEN": self.token,
            "SOCIALPROOF_REDIS_NAMESPACE": namespace,
            "SOCIALPROOF_LOG_FORMAT": "json",
            **LOCAL_ENV,
            **extra,
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[ManagedProcess, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        proc = ManagedProcess(name=name, argv=argv, env=env, cwd=str(ROOT), echo=False,
                              log_path=log).start()
        self.started.append(proc)
        return proc, log

    def orders(self, namespace: str, **extra: str) -> Service:
        """``socialproof serve orders`` (not waited for: see :meth:`ready`)."""
        port = free_port()
        proc, log = self._spawn("orders", service_argv("orders"),
                                self.env(namespace, SOCIALPROOF_ORDERS_PORT=str(port), **extra))
        return Service(proc, f"http://127.0.0.1:{port}", log)

    def worker(self, namespace: str, group: str, **extra: str) -> Service:
        """``socialproof worker`` in consumer group ``group`` (not waited for: see
        :meth:`ready`)."""
        port = free_port()
        env = self.env(namespace, SOCIALPROOF_WORKER_CONSUMER_GROUP=group,
                       SOCIALPROOF_WORKER_WEB_PORT=str(port), **extra)
        proc, log = self._spawn("worker", [sys.executable, "-m", "cli", "worker"], env)
        return Service(proc, f"http://127.0.0.1:{port}", log)

    @staticmethod
    def ready(orders: Service, worker: Service) -> None:
        """Until the orders service has replayed its view and the worker holds partitions
        (both start at once: each takes seconds of imports and connecting)."""
        wait_ready(f"{orders.url}/readyz", 90, "the orders service", orders.proc)
        wait_worker_assigned(f"{worker.url}/readyz", 90, worker.proc)

    def stop(self) -> None:
        # SIGTERM to all first, so their shutdowns overlap; then wait for each
        for proc in self.started:
            proc.signal(signal.SIGTERM)
        for proc in reversed(self.started):
            proc.stop()
        self.started.clear()


def metric(url: str, name: str) -> float:
    """The sum of a Prometheus metric over its labels, from ``url``/metrics."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the broker's view of itself ----------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def admin(bootstrap: str) -> AdminClient:
    # a broker being down is what these tests are about: not worth a log line per retry
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000, "log_level": 0})


def partitions(client: AdminClient, topic: str | None = None) -> list[Partition]:
    """Every partition (of ``topic``, or of every topic, internal ones included) as the cluster's
    metadata describes it now; empty when no broker answered in time (a broker is down: the
    caller waits with a deadline)."""
    try:
        meta = client.list_topics(topic, timeout=5)
    except KafkaException:
        return []
    return [
        Partition(name, p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
        for name, t in meta.topics.items() if t.error is None
        for p in t.partitions.values()
    ]


# --- orders -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One attempt of an order: when it was sent and answered, and what came back (status 0:
    no HTTP answer at all)."""

    sent: float
    at: float
    status: int
    retry_after: str | None = None
    error: str | None = None

    @property
    def refused_as_promised(self) -> bool:
        """A 503 as the contract promises it: broker_unavailable, with a usable Retry-After."""
        return (self.status == 503 and self.error == "broker_unavailable"
                and self.retry_after is not None and self.retry_after.isdigit()
                and int(self.retry_after) > 0)


@dataclass
class Order:
    key: str
    product: str
    user: str
    #: when its first attempt was sent (monotonic)
    sent: float
    answers: list[Answer] = field(default_factory=list)
    order_id: str | None = None

    @property
    def acked_at(self) -> float | None:
        return self.answers[-1].at if self.order_id else None

    @property
    def body(self) -> dict:
        return {"user_id": self.user, "currency": "EUR",
                "lines": [{"product_id": self.product, "quantity": 1, "unit_price": "19.99"}]}


class OrderTraffic:
    """Orders at ``rate`` per second to the orders service at ``url``, from a thread with its own
    event loop, until :meth:`stop`; each is retried with its Idempotency-Key until answered 201.

    Retries wait ``min(Retry-After, retry_cap_s)``: the service advertises 5 s, a shorter wait
    makes the recovery visible sooner without changing what is asserted. Every order is bounded:
    at most ``max_attempts`` attempts within ``give_up_s`` of its first.
    """

    def __init__(self, url: str, token: str, products: list[str], rate: float, prefix: str,
                 retry_cap_s: float = 1.0, max_attempts: int = 200, give_up_s: float = 90.0,
                 max_orders: int = 5000) -> None:
        self.url, self.products, self.rate, self.prefix = url, products, rate, prefix
        self.headers = {"Authorization": f"Bearer {token}"}
        self.retry_cap_s, self.max_attempts, self.give_up_s = retry_cap_s, max_attempts, give_up_s
        self.max_orders = max_orders
        self.orders: list[Order] = []
        self._stop = threading.Event()
        self._abort = threading.Event()  # the test failed: no more retries
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name=f"orders-{prefix}", daemon=True)

    def __enter__(self) -> OrderTraffic:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # the test failed already: do not wait for retries
            self._abort.set()
            self._stop.set()
            self._thread.join(timeout=35)  # (an attempt in flight times out after 30 s)
            return
        self.stop()

    def stop(self, drain_s: float | None = None) -> None:
        """No new orders; wait (at most ``drain_s``, default ``give_up_s`` + 10) for those
        still being retried."""
        self._stop.set()
        self._thread.join(timeout=drain_s if drain_s is not None else self.give_up_s + 10)
        assert not self._thread.is_alive(), "order traffic did not finish in time"

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=30, limits=limits, headers=self.headers) as client:
            tasks: list[asyncio.Task] = []
            started = time.monotonic()
            while not self._stop.is_set() and len(tasks) < self.max_orders:
                n = len(tasks)
                order = Order(key=f"{self.prefix}-{n}-{uuid.uuid4().hex[:8]}",
                              product=self.products[n % len(self.products)],
                              user=f"u-{self.prefix}-{n}", sent=time.monotonic())
                self.orders.append(order)
                tasks.append(asyncio.create_task(self._place(client, order)))
                await asyncio.sleep(max(0.0, started + (n + 1) / self.rate - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=self.give_up_s + 5)

    async def _place(self, client: httpx.AsyncClient, order: Order) -> None:
        for _ in range(self.max_attempts):
            sent = time.monotonic()
            try:
                r = await client.post(f"{self.url}/v1/orders", json=order.body,
                                      headers={"Idempotency-Key": order.key})
            except httpx.HTTPError as exc:
                order.answers.append(Answer(sent, time.monotonic(), 0, error=repr(exc)))
            else:
                error = None
                if r.status_code != 201:
                    try:
                        error = r.json().get("error")
                    except ValueError:
                        error = r.text[:200]
                order.answers.append(Answer(sent, time.monotonic(), r.status_code,
                                            r.headers.get("Retry-After"), error))
                if r.status_code == 201:
                    order.order_id = r.json()["order_id"]
                    return
            if time.monotonic() - order.sent > self.give_up_s or self._abort.is_set():
                return
            retry_after = order.answers[-1].retry_after
            wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
            await asyncio.sleep(min(wait, self.retry_cap_s))

    # --- what happened -------------------------------------------------------------------------

    def snapshot(self) -> list[Order]:
        return list(self.orders)

    def acked(self) -> list[Order]:
        return [o for o in self.snapshot() if o.order_id]

    def acked_sent_after(self, moment: float) -> list[Order]:
        """Orders first sent after ``moment`` and answered 201."""
        return [o for o in self.acked() if o.sent > moment]

    def answers(self) -> list[Answer]:
        return [a for o in self.snapshot() for a in o.answers]

    def refusals(self) -> list[Answer]:
        return [a for a in self.answers() if a.status != 201]

    def unexpected(self) -> list[Answer]:
        """Answers other than 201 and the contract's 503 (a 500, a 422, no answer at all …)."""
        return [a for a in self.answers() if a.status != 201 and not a.refused_as_promised]

    def per_product(self) -> Counter[str]:
        return Counter(o.product for o in self.acked())

    def dump(self, path: Path) -> None:
        """Every order and answer, times as wall-clock seconds (to set beside the logs)."""
        offset = time.time() - time.monotonic()
        path.write_text(json.dumps([
            {"key": o.key, "product": o.product, "order_id": o.order_id,
             "sent": round(o.sent + offset, 3),
             "answers": [{"sent": round(a.sent + offset, 3), "at": round(a.at + offset, 3),
                          "status": a.status, "retry_after": a.retry_after, "error": a.error}
                         for a in o.answers]}
            for o in self.snapshot()
        ], indent=1))


def orders_in_topic(settings: Settings, products: set[str]) -> dict[str, list[tuple[int, int]]]:
    """order id -> (partition, offset) of every purchase on ``orders.events`` of one of
    ``products`` (a retried order may have reached the log more than once: same order id)."""
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for record in topic_records(settings, ORDERS, None):
        if record.value is None:
            continue
        event = codec.decode(record.value)
        if isinstance(event, PurchaseCompleted) and any(
            line.product_id in products for line in event.payload.lines
        ):
            found[event.payload.order_id].append((record.partition, record.offset))
    return dict(found)


async def _mismatch(
    redis_url: str, namespace: str, orders: list[Order]
) -> tuple[str, bool] | None:
    """The first difference between the orders answered 201 and the serving store, and whether
    it is final (more counted than acknowledged never goes away), or None: per product, the
    buyers the notifier would show (each order has a buyer of its own, so that is the number of
    orders); per order, the fact the worker recorded."""
    want = Counter(o.product for o in orders)
    products = sorted(want)
    keys = Keys(namespace)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        proofs = await ProofReader(redis, namespace).read_many(products)
        for product, proof in zip(products, proofs, strict=True):
            if proof.bought.h24 != want[product]:
                return (f"{product}: bought {proof.bought.h24}, orders answered 201: "
                        f"{want[product]}", proof.bought.h24 > want[product])
        async with redis.pipeline(transaction=False) as pipe:
            for o in orders:
                pipe.hgetall(keys.order(o.order_id or ""))
            facts = await pipe.execute()
        for o, fact in zip(orders, facts, strict=True):
            if fact.get("user") != o.user or fact.get(f"q:{o.product}") != "1":
                return f"order {o.order_id} ({o.key}): stored as {fact}", False
        return None
    finally:
        await redis.aclose()


def wait_counted(redis_url: str, namespace: str, orders: list[Order], timeout: float,
                 alive: ManagedProcess | None = None) -> float:
    """Until the store holds exactly the orders answered 201 (see :func:`_mismatch`); returns
    the seconds it took, fails with the last difference after ``timeout``."""

    async def poll() -> float:
        started = time.monotonic()
        while True:
            if alive is not None:
                alive.ensure_alive()
            found = await _mismatch(redis_url, namespace, orders)
            if found is None:
                return time.monotonic() - started
            last, final = found
            if final:
                raise AssertionError(f"counted more than was acknowledged: {last}")
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not counted after {timeout}s: {last}")
            await asyncio.sleep(0.1)

    return asyncio.run(poll())
