"""kcat, the engineers' Kafka tool, against the session broker as engineers run it: Debian's kcat
(librdkafka 2.0.2, the oldest client here) lists the registry's topics, produces a contract event
that the running worker counts, and consumes it back byte for byte. The README's kcat example is
run as written (only the addresses and ids are this test's own)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from string import Template

import httpx

from contracts.topics import ALL_TOPICS, ORDERS
from socialproof.kafka import topic_name
from socialproof.settings import Settings
from tests.support import kcat
from tests.support.waiting import wait_for
from tools.devstack import Stack

README = Path(__file__).resolve().parents[2] / "README.md"


PURCHASE = Template(
    '{"event_id":"$event_id","event_type":"purchase.completed","schema_version":1,'
    '"occurred_at":"$now","producer":"orders","payload":{"order_id":"$order","user_id":"$user",'
    '"currency":"EUR","lines":[{"product_id":"$product","quantity":1,"unit_price":"19.99"}]}}'
)


def purchase_json(order: str, user: str, product: str) -> str:
    """A purchase.completed envelope as JSON text on one line, as an engineer would type it (the
    README's order of one mug): no socialproof code builds it."""
    return PURCHASE.substitute(event_id=uuid.uuid4(), order=order, user=user, product=product,
                               now=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def bought_24h(notifier_api: httpx.Client, product: str) -> int:
    response = notifier_api.get(f"/v1/proof/products/{product}")
    assert response.status_code == 200, response.text
    return response.json()["bought"]["24h"]


def test_kcat_lists_every_registry_topic(settings: Settings, topics: None) -> None:
    # Given the session broker with the registry's topics
    # When kcat lists the cluster's metadata as JSON
    done = kcat.run("-L", "-J", "-b", settings.kafka_bootstrap_servers)
    # Then it succeeds and shows a broker and every registry topic with its partitions
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    metadata = json.loads(done.stdout)
    assert metadata["brokers"], metadata
    listed = {t["topic"]: len(t["partitions"]) for t in metadata["topics"]}
    for topic in ALL_TOPICS:
        name = topic_name(settings, topic)
        assert listed.get(name) == topic.partitions, (name, listed.get(name), sorted(listed))


def test_a_contract_event_produced_with_kcat_is_counted_and_consumed_back(
    stack: Stack, settings: Settings, notifier_api: httpx.Client, uid
) -> None:
    bootstrap, topic = settings.kafka_bootstrap_servers, topic_name(settings, ORDERS)
    # Given a purchase of a product nobody bought yet, as one line of JSON text
    product, order = uid("mug"), uid("order")
    value = purchase_json(order, uid("u"), product).encode()
    assert bought_24h(notifier_api, product) == 0
    produced_after_ms = int(time.time() * 1000)
    # When kcat produces it to the orders topic, keyed by its order id (the registry's key)
    done = kcat.run("-P", "-b", bootstrap, "-t", topic, "-k", order, input=value + b"\n")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    # Then the running worker counts it
    wait_for(lambda: bought_24h(notifier_api, product) == 1, 15,
             "the purchase produced with kcat to be counted")
    # And kcat finds it (seeking every partition by time) and consumes it back byte for byte
    found = kcat.run("-C", "-b", bootstrap, "-t", topic, "-o", f"s@{produced_after_ms}", "-e",
                     "-q", "-f", "%k %p %o\n")
    assert found.returncode == 0, found.stderr.decode(errors="replace")
    positions = [line.split()[1:] for line in found.stdout.decode().splitlines()
                 if line.split()[:1] == [order]]
    assert len(positions) == 1, found.stdout.decode()
    partition, offset = positions[0]
    back = kcat.run("-C", "-b", bootstrap, "-t", topic, "-p", partition, "-o", offset, "-c", "1",
                    "-e", "-q", "-f", "%k\t%s")
    assert back.returncode == 0, back.stderr.decode(errors="replace")
    assert back.stdout == order.encode() + b"\t" + value


def readme_produce_example() -> str:
    """The README's shell example that produces an event with kcat (from ``printf`` through the
    ``kcat -P`` line)."""
    match = re.search(r"^printf '\{.*?\| kcat -P [^\n]*$", README.read_text(), re.M | re.S)
    assert match, "README.md has no kcat produce example (printf '{…}' … | kcat -P …)"
    return match.group(0)


def test_the_readme_kcat_example_produces_an_event_the_worker_counts(
    stack: Stack, settings: Settings, notifier_api: httpx.Client, uid
) -> None:
    # Given the README's kcat example, pointed at the session broker with ids of this test
    product, order, user = uid("mug"), uid("order"), uid("u")
    example = readme_produce_example()
    for written, ours in (("127.0.0.1:9092", settings.kafka_bootstrap_servers),
                          (f"-t {ORDERS.name}", f"-t {topic_name(settings, ORDERS)}"),
                          ("order-43", order), ("mug-1", product), ('"u1"', f'"{user}"')):
        assert written in example, f"the README example no longer contains {written!r}"
        example = example.replace(written, ours)
    # When it runs in a shell, as an engineer would paste it
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", example], capture_output=True,
                          timeout=30, text=True)
    assert done.returncode == 0, done.stderr
    # Then the running worker counts the purchase
    wait_for(lambda: bought_24h(notifier_api, product) == 1, 15,
             "the purchase of the README's kcat example to be counted")
