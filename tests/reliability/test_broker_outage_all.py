"""Broker unavailable for every service and the stream worker (the orders service has its own,
more detailed outage tests in tests/integration/test_broker_outage.py; not repeated here).

With a private broker frozen (SIGSTOP: connections hang, as with a partitioned or stalled
broker): catalog and social writes answer 503 with Retry-After (never a 500, never a silent
success), every ``/readyz`` (catalog, social, notifier, worker) reports the broker, and the
notifier keeps serving reads from Redis. When it thaws, every process recovers without a restart:
readiness is green again, writes are accepted, the worker counts new events, and every write
acknowledged before, during or after the outage is in its topic.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from contracts.topics import FRIENDSHIPS, PRODUCTS
from tests.integration.test_counters_store import purchase
from tests.support.private import PrivateBackend
from tests.support.services import topic_records
from tests.support.storefront import publish
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PRODUCE_TIMEOUT_MS = "1500"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"] == "broker_unavailable", response.text


def test_every_service_and_the_worker_report_a_frozen_broker_and_recover_without_restart(
    private: PrivateBackend,
) -> None:
    run = uuid.uuid4().hex[:6]
    ns = f"out{run}"
    env = {"SOCIALPROOF_PRODUCE_TIMEOUT_MS": PRODUCE_TIMEOUT_MS}
    catalog = private.service("catalog", ns, **env)
    social = private.service("social", ns, **env)
    notifier = private.service("notifier", ns, **env)
    worker = private.worker(ns, f"g-out-{run}")
    ready = {"catalog": catalog.url, "social": social.url, "notifier": notifier.url,
             "worker": worker.url}
    auth = {"Authorization": f"Bearer {private.token}"}
    acknowledged_products: list[str] = []
    acknowledged_pairs: list[str] = []
    assert private.broker is not None
    with httpx.Client(timeout=15) as client:

        def create_product(pid: str) -> httpx.Response:
            return client.post(f"{catalog.url}/v1/products", headers=auth, json={
                "id": pid, "name": "Outage", "price": "3.00", "currency": "EUR"})

        def befriend(a: str, b: str) -> httpx.Response:
            return client.put(f"{social.url}/v1/users/{a}/friends/{b}", headers=auth)

        # Given a working system that acknowledged writes
        assert create_product(f"p-{run}-before").status_code == 201
        acknowledged_products.append(f"p-{run}-before")
        assert befriend(f"a-{run}", f"b-{run}").status_code == 200
        acknowledged_pairs.append(f"a-{run}|b-{run}")
        item = f"p-{run}-sold"
        publish(private.settings, purchase(f"o-{run}-1", f"u-{run}-1", item, datetime.now(UTC)))
        wait_for(lambda: client.get(f"{notifier.url}/v1/proof/products/{item}").json()
                 ["bought"]["24h"] == 1, 15, "the first purchase to be counted")
        # When the broker freezes
        private.broker.signal(signal.SIGSTOP)
        try:
            # Then writes are refused with 503 + Retry-After, within the produce timeout
            started = time.monotonic()
            assert_unavailable(create_product(f"p-{run}-during"))
            assert_unavailable(befriend(f"c-{run}", f"d-{run}"))
            assert time.monotonic() - started < 2 * (int(PRODUCE_TIMEOUT_MS) / 1000 + 3)
            # And every process's /readyz says the broker is failing (and Redis, where used, is fine)
            for name, url in ready.items():
                body = wait_for(
                    lambda u=url: (r := client.get(f"{u}/readyz")).status_code == 503 and r.json(),
                    15, f"{name} /readyz to report the frozen broker",
                )
                assert body["checks"]["kafka"].startswith("failing"), (name, body)
                assert body["checks"].get("redis", "ok") == "ok", (name, body)
            # And the notifier still serves what Redis holds
            served = client.get(f"{notifier.url}/v1/proof/products/{item}")
            assert served.status_code == 200 and served.json()["bought"]["24h"] == 1
        finally:
            # When the broker thaws
            private.broker.signal(signal.SIGCONT)
        # Then every process is ready again, without a restart
        for name, url in ready.items():
            wait_for(lambda u=url: client.get(f"{u}/readyz").status_code == 200, 30,
                     f"{name} /readyz to recover")
        # And writes are accepted again
        wait_for(lambda: create_product(f"p-{run}-after").status_code == 201, 20,
                 "the catalog to accept a product again")
        acknowledged_products.append(f"p-{run}-after")
        wait_for(lambda: befriend(f"e-{run}", f"f-{run}").status_code == 200, 20,
                 "the social service to accept a friendship again")
        acknowledged_pairs.append(f"e-{run}|f-{run}")
        # And the worker counts what arrives after the outage
        publish(private.settings, purchase(f"o-{run}-2", f"u-{run}-2", item, datetime.now(UTC)))
        wait_for(lambda: client.get(f"{notifier.url}/v1/proof/products/{item}").json()
                 ["bought"]["24h"] == 2, 30, "a purchase after the outage to be counted")
    # And no acknowledged write is missing from its topic
    for pid in acknowledged_products:
        assert topic_records(private.settings, PRODUCTS, pid), f"product {pid} lost"
    for pair in acknowledged_pairs:
        assert topic_records(private.settings, FRIENDSHIPS, pair), f"friendship {pair} lost"
    for proc in (catalog, social, notifier, worker):
        assert proc.proc.running, proc.proc.name
        proc.stop()
