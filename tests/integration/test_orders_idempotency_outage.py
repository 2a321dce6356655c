"""A client retrying an order after a 503 with the same Idempotency-Key gets one order: the retry
republishes the ids reserved by the first attempt, so even if the first attempt's record did
reach the log, every copy names the same order and event (consumers deduplicate by order_id).

Uses a private embedded broker that the test freezes (SIGSTOP); the session broker stays up.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator

import httpx
import pytest

from contracts.events import PurchaseCompleted
from contracts.topics import ORDERS
from socialproof.kafka import ensure_topics
from socialproof.processes import ManagedProcess, free_port, service_argv
from socialproof.settings import Settings
from tests.conftest import ARTIFACTS
from tests.support.backends import FAST_FAILOVER_ENV, Backend
from tests.support.services import topic_records
from tests.support.storefront import product, publish
from tests.support.waiting import wait_for
from tools.devstack import embedded_broker, wait_for_broker, wait_ready


class Private:
    """An orders service of its own, on a broker of its own."""

    def __init__(self, backend: Backend, token: str) -> None:
        logs = ARTIFACTS / "orders-idempotency"
        logs.mkdir(parents=True, exist_ok=True)
        broker_port, port = free_port(), free_port()
        self.settings = Settings(
            kafka_bootstrap_servers=f"127.0.0.1:{broker_port}", redis_url=backend.redis_url
        )
        self.url = f"http://127.0.0.1:{port}"
        shutil.rmtree(logs / "kafka", ignore_errors=True)
        self.broker = embedded_broker(
            broker_port, logs / "kafka", echo=False, log_path=logs / "broker.log"
        )
        self.orders = ManagedProcess(
            "orders-idem",
            service_argv("orders"),
            env={
                **FAST_FAILOVER_ENV,
                "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
                "REDIS_URL": backend.redis_url,
                "SOCIALPROOF_SERVICE_TOKEN": token,
                "SOCIALPROOF_ORDERS_PORT": str(port),
                "SOCIALPROOF_PRODUCE_TIMEOUT_MS": "1500",
            },
            echo=False,
            log_path=logs / "orders.log",
        )


@pytest.fixture
def private(backend: Backend, service_token: str) -> Iterator[Private]:
    env = Private(backend, service_token)
    env.broker.start()
    try:
        wait_for_broker(env.settings.kafka_bootstrap_servers)
        ensure_topics(env.settings)
        publish(env.settings, product("p-idem"))
        env.orders.start()
        wait_ready(f"{env.url}/readyz", 60, "the private orders service", env.orders)
        yield env
    finally:
        env.broker.signal(signal.SIGCONT)
        env.orders.stop()
        env.broker.stop()


def test_a_retry_after_a_503_republishes_the_same_order(
    private: Private, service_token: str, uid
) -> None:
    body = {
        "user_id": uid("u"),
        "currency": "EUR",
        "lines": [{"product_id": "p-idem", "quantity": 1, "unit_price": "5.00"}],
    }
    headers = {"Authorization": f"Bearer {service_token}", "Idempotency-Key": uid("key")}
    with httpx.Client(base_url=private.url, headers=headers, timeout=15) as client:
        # Given a broker that stops answering while an order with an Idempotency-Key is placed
        private.broker.signal(signal.SIGSTOP)
        first = client.post("/v1/orders", json=body)
        assert first.status_code == 503, first.text
        # When the broker is back and the client retries with the same key and body
        private.broker.signal(signal.SIGCONT)
        retry = wait_for(
            lambda: (r := client.post("/v1/orders", json=body)).status_code == 201 and r,
            30,
            "the retried order to be accepted",
            interval=0.2,
        )
        # Then every purchase event in the log (one or two copies, depending on whether the
        # first attempt's record got in) is that one order, with one event id
        accepted = retry.json()
        records = topic_records(private.settings, ORDERS, None)
        purchases = [PurchaseCompleted.model_validate_json(r.value) for r in records]
        assert 1 <= len(purchases) <= 2
        assert {(p.payload.order_id, str(p.event_id)) for p in purchases} == {
            (accepted["order_id"], accepted["event_id"])
        }
        # And asking once more answers the same, publishing nothing new
        again = client.post("/v1/orders", json=body)
        assert again.status_code == 201 and again.json() == accepted
        assert len(topic_records(private.settings, ORDERS, None)) == len(records)
