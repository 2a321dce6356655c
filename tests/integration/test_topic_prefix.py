"""SOCIALPROOF_KAFKA_TOPIC_PREFIX on a real broker: a prefixed deployment creates, writes and
reads only its own topics, while another deployment's (unprefixed) topics on the same cluster
carry records it must never see or touch."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from contracts.topics import ALL_TOPICS, ORDERS, PRODUCTS
from contracts.views import Keys
from ops import topics as topicops
from socialproof.kafka import ensure_topics, topic_name
from socialproof.processes import free_port
from socialproof.settings import Settings
from tests.conftest import ARTIFACTS, SERVICE_TOKEN
from tests.integration.test_processor_support import processed_count, publish, start_worker
from tests.integration.test_topic_ops import purchase
from tests.support.backends import FAST_FAILOVER_ENV
from tests.support.services import topic_records
from tests.support.waiting import wait_for
from tools.devstack import Stack, StackConfig


def delete_topics_with_prefix(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    prefix = settings.kafka_topic_prefix
    assert prefix
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else []:
        future.result()


@pytest.fixture
def prefixed(settings: Settings, topics: None) -> Iterator[Settings]:
    """The session's servers under a prefix of their own, with the registry's topics created;
    the unprefixed registry topics (``topics``) stand for another environment on the cluster."""
    mine = settings.model_copy(update={"kafka_topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    try:
        created = ensure_topics(mine)
        assert sorted(created) == sorted(mine.kafka_topic_prefix + t.name for t in ALL_TOPICS)
        yield mine
    finally:
        delete_topics_with_prefix(mine)


def test_a_prefixed_worker_consumes_and_dead_letters_only_its_own_topics(
    settings: Settings,
    prefixed: Settings,
    redis_client: redis_sync.Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = prefixed.kafka_topic_prefix
    # Given another environment's purchase on the unprefixed topic, published before the worker
    theirs = purchase(f"theirs-{run}", product=f"theirs-{run}")
    asyncio.run(publish(settings, [theirs]))
    dead_before = len(topicops.dead_letters(settings))
    # When a worker with the prefix runs, gets our purchase and a record that is not an event
    monkeypatch.setenv("SOCIALPROOF_KAFKA_TOPIC_PREFIX", prefix)
    worker = start_worker(settings, namespace, group=f"g-{run}")
    try:
        ours = purchase(f"ours-{run}", product=f"ours-{run}")
        [delivered] = asyncio.run(publish(prefixed, [ours]))
        assert delivered.topic == f"{prefix}orders.events"
        producer = Producer({"bootstrap.servers": prefixed.kafka_bootstrap_servers})
        producer.produce(topic_name(prefixed, ORDERS), key=b"poison", value=b"not json")
        assert producer.flush(10) == 0
        keys = Keys(namespace)
        wait_for(
            lambda: redis_client.zscore(keys.buyers(f"ours-{run}"), "u1") is not None,
            30,
            "our purchase in the worker's namespace",
        )
        letters = wait_for(
            lambda: topicops.dead_letters(prefixed), 30, "the dead letter on our dead-letter topic"
        )
        # Then it applied exactly our event, from our topic only, and dead-lettered into ours
        assert processed_count(worker.url) == 1
        metrics = httpx.get(f"{worker.url}/metrics", timeout=5).text
        counted = [
            line for line in metrics.splitlines() if line.startswith("socialproof_events_processed")
        ]
        assert counted and all(f'topic="{prefix}orders.events"' in line for line in counted)
        assert not list(redis_client.scan_iter(f"{namespace}:*theirs-{run}*"))
        assert [(d.letter.source_topic, d.letter.reason) for d in letters] == [
            (f"{prefix}orders.events", "not_json")
        ]
        assert len(topicops.dead_letters(settings)) == dead_before
    finally:
        worker.stop()


def test_prefixed_services_publish_and_read_their_own_topics(
    settings: Settings, prefixed: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    workdir = ARTIFACTS / f"prefix-stack-{run}"
    stack = Stack(
        StackConfig(
            workdir=workdir,
            ports={"catalog": free_port(), "orders": free_port()},
            kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
            redis_url=settings.redis_url,
            service_token=SERVICE_TOKEN,
            extra_env={
                **FAST_FAILOVER_ENV,
                "SOCIALPROOF_KAFKA_TOPIC_PREFIX": prefixed.kafka_topic_prefix,
                "SOCIALPROOF_REDIS_NAMESPACE": f"t{run}",
            },
            echo=False,
            log_format="json",
        )
    )
    try:
        stack.start_services(("catalog", "orders"), worker=False)
        headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        product, order = f"pp-{run}", f"po-{run}"
        # When a product is created and then ordered through the prefixed services
        created = httpx.post(
            f"{stack.url('catalog')}/v1/products",
            json={"id": product, "name": "Mug", "price": "9.99", "currency": "EUR"},
            headers=headers,
            timeout=15,
        )
        assert created.status_code == 201, created.text
        # (orders validates the product from its view of the prefixed product topic)
        ordered = httpx.post(
            f"{stack.url('orders')}/v1/orders",
            json={
                "user_id": "u1",
                "currency": "EUR",
                "lines": [{"product_id": product, "quantity": 1, "unit_price": "9.99"}],
            },
            headers={**headers, "Idempotency-Key": order},
            timeout=15,
        )
        assert ordered.status_code == 201, ordered.text
        order_id = ordered.json()["order_id"]
        # Then both events are on the prefixed topics and not on the unprefixed ones
        assert len(topic_records(prefixed, PRODUCTS, product)) == 1
        assert len(topic_records(prefixed, ORDERS, order_id)) == 1
        assert topic_records(settings, PRODUCTS, product) == []
        assert topic_records(settings, ORDERS, order_id) == []
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
