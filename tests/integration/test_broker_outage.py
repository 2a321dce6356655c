"""With the broker unavailable an order is never acknowledged: 503 with Retry-After, never a 500
or a silent 201; /readyz says so; once the broker is back the service recovers by itself.

Uses a private embedded broker (the session one must stay up for everyone else). Two kinds of
outage: a frozen broker (SIGSTOP: connections hang, requests time out) and a dead one (killed:
connections are refused).
"""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from contracts import codec
from contracts.topics import ORDERS
from socialproof.kafka import ensure_topics
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.conftest import ARTIFACTS, SERVICE_TOKEN
from tests.support.backends import FAST_FAILOVER_ENV, Backend
from tests.support.storefront import product, publish
from tests.support.waiting import wait_for
from tools.devstack import embedded_broker, wait_for_broker, wait_ready

PRODUCE_TIMEOUT_MS = 1500
PRODUCTS_USED = ("p-before", "p-during", "p-after", "p-1", "p-2", "p-3")


class PrivateOrders:
    def __init__(self, backend: Backend, workdir: Path) -> None:
        self.workdir = workdir
        self.broker_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.broker_port}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(kafka_bootstrap_servers=self.bootstrap,
                                 redis_url=backend.redis_url)
        self.broker: ManagedProcess | None = None
        self.orders = ManagedProcess(
            "orders-outage",
            service_argv("orders"),
            env={
                **FAST_FAILOVER_ENV,
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "REDIS_URL": backend.redis_url,
                "SOCIALPROOF_SERVICE_TOKEN": SERVICE_TOKEN,
                "SOCIALPROOF_ORDERS_PORT": str(self.port),
                "SOCIALPROOF_PRODUCE_TIMEOUT_MS": str(PRODUCE_TIMEOUT_MS),
            },
            echo=False,
            log_path=workdir / "orders-outage.log",
        )

    def start_broker(self) -> None:
        self.broker = embedded_broker(self.broker_port, self.workdir / "kafka", echo=False,
                                      log_path=self.workdir / "broker-outage.log").start()
        wait_for_broker(self.bootstrap, proc=self.broker)
        ensure_topics(self.settings)
        # orders only accept products the catalog published on the product topic
        publish(self.settings, *(product(p) for p in PRODUCTS_USED))

    def order(self, client: httpx.Client, product: str) -> httpx.Response:
        return client.post(
            f"{self.url}/v1/orders",
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
            json={"user_id": "u1", "currency": "EUR",
                  "lines": [{"product_id": product, "quantity": 1, "unit_price": "5.00"}]},
        )

    def readiness(self, client: httpx.Client) -> httpx.Response:
        return client.get(f"{self.url}/readyz")

    def order_ids_in_topic(self) -> set[str]:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-{uuid.uuid4()}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        ids: set[str] = set()
        try:
            partitions = c.list_topics(ORDERS.name, timeout=5).topics[ORDERS.name].partitions
            c.assign([TopicPartition(ORDERS.name, p, 0) for p in partitions])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                msg = c.poll(0.2)
                if msg is not None and not msg.error():
                    ids.add(codec.decode(msg.value()).payload.order_id)
        finally:
            c.close()
        return ids


@pytest.fixture
def private(backend: Backend) -> Iterator[PrivateOrders]:
    workdir = ARTIFACTS / "outage"
    shutil.rmtree(workdir / "kafka", ignore_errors=True)  # a broker of this test's own, empty
    workdir.mkdir(parents=True, exist_ok=True)
    env = PrivateOrders(backend, workdir)
    env.start_broker()
    env.orders.start()
    try:
        wait_ready(f"{env.url}/readyz", 60, "the private orders service", env.orders)
        yield env
    finally:
        env.orders.stop()
        if env.broker:
            env.broker.signal(signal.SIGCONT)
            env.broker.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["error"] == "broker_unavailable"
    assert "retry with the same Idempotency-Key" in body["message"]


def test_a_frozen_broker_gets_503_and_the_service_recovers_when_it_thaws(
    private: PrivateOrders,
) -> None:
    assert private.broker is not None
    with httpx.Client(timeout=15) as client:
        # Given a working service that acknowledged an order
        before = private.order(client, "p-before")
        assert before.status_code == 201
        # When the broker stops answering
        private.broker.signal(signal.SIGSTOP)
        # Then orders are refused with 503 and Retry-After, within the produce timeout
        started = time.monotonic()
        during = private.order(client, "p-during")
        assert_unavailable(during)
        assert time.monotonic() - started < PRODUCE_TIMEOUT_MS / 1000 + 3
        # And readiness reports the broker
        not_ready = wait_for(
            lambda: (r := private.readiness(client)).status_code == 503 and r,
            10, "/readyz to report the frozen broker",
        )
        assert not_ready.json()["checks"]["kafka"].startswith("failing")
        assert not_ready.json()["checks"]["redis"] == "ok"
        # When the broker is back
        private.broker.signal(signal.SIGCONT)
        # Then the same process recovers without a restart
        wait_for(lambda: private.readiness(client).status_code == 200, 20, "/readyz to recover")
        after = wait_for(
            lambda: (r := private.order(client, "p-after")).status_code == 201 and r,
            20, "an order to be accepted again",
        )
        # And every acknowledged order is in the topic
        acknowledged = {before.json()["order_id"], after.json()["order_id"]}
        assert acknowledged <= private.order_ids_in_topic()
        assert private.orders.running


def test_a_dead_broker_gets_503_and_a_new_broker_is_picked_up_without_restart(
    private: PrivateOrders,
) -> None:
    assert private.broker is not None
    with httpx.Client(timeout=15) as client:
        assert private.order(client, "p-1").status_code == 201
        # When the broker process dies (connections are refused)
        private.broker.stop()
        # Then: 503, never 500 and never a silent 201
        assert_unavailable(private.order(client, "p-2"))
        wait_for(lambda: private.readiness(client).status_code == 503, 10, "/readyz to fail")
        # When a broker comes back on the same address (empty: the embedded one keeps no data)
        private.start_broker()
        # Then the running service reconnects and accepts orders again
        wait_for(lambda: private.readiness(client).status_code == 200, 20, "/readyz to recover")
        wait_for(lambda: private.order(client, "p-3").status_code == 201, 20,
                 "an order to be accepted by the new broker")
        assert private.orders.running
