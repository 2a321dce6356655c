"""``make bench`` against existing servers (KAFKA_BOOTSTRAP_SERVERS + REDIS_URL): it runs on the
session's broker and Redis next to someone else's data, and leaves that data exactly as it was and
nothing of its own behind (topics, consumer groups, Redis keys).

The same run is the smoke test of the ``e2e_latency``, ``broker_fetch`` and ``scaling`` scenarios
at tiny sizes (:func:`check_e2e_fetch_and_scaling`): a real stack carries timed orders to SSE
clients, every timed order's update arrives, the scaling grid is measured, and both are plotted
into the report. It checks the harness, never the speed. (They had a run of their own on the
bench's embedded servers, 22 s of the suite; the embedded servers are smoke-tested by the
``faust_eos`` run in test_processor_bench.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis as redis_sync
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from contracts import codec
from contracts.topics import EVENT_TOPICS, ORDERS
from ops import topics as topicops
from socialproof.settings import Settings
from tests.integration.test_processor_support import publish
from tests.integration.test_topic_ops import purchase
from tests.support.bench import ROOT, run_quick
from tests.support.waiting import wait_for

#: cheap scenarios that between them start every kind of process the bench runs on a broker and
#: Redis (batched and per-event workers: throughput; catalog/orders/notifier: e2e_latency; a bare
#: consumer: broker_fetch) and write Redis directly (scaling's buyer sets and friend graphs).
#: friends_bought and read_api, which ran here too, run in this mode in test_processor_bench.py
#: and test_notifier_bench.py and start nothing of another kind (10 s of the suite)
SCENARIOS = ["throughput", "e2e_latency", "broker_fetch", "scaling"]


def topics_of(admin: AdminClient) -> set[str]:
    """The broker's topics but its own internal ones (``__consumer_offsets``,
    ``__transaction_state``), which it creates on first use, whoever that is."""
    return {t for t in admin.list_topics(timeout=10).topics if not t.startswith("__")}


def groups(admin: AdminClient) -> set[str]:
    return {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid}


def test_the_bench_on_existing_servers_touches_nobody_elses_data(
    settings: Settings, topics: None, redis_client: redis_sync.Redis, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    # Given someone else's data: keys (one in the default namespace), a record in a registry
    # topic and a consumer group with a committed offset
    foreign = {f"foreign-{run}:note": "keep", f"sp:foreign-{run}": "mine"}
    for key, value in foreign.items():
        redis_client.set(key, value)
    event = purchase(f"foreign-{run}")
    [record] = asyncio.run(publish(settings, [event]))
    group = f"foreign-{run}"
    committer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    committer.commit(
        offsets=[TopicPartition(record.topic, record.partition, record.offset + 1)],
        asynchronous=False,
    )
    committer.close()
    topics_before = topics_of(admin)
    groups_before = groups(admin)
    ends_before = {t.name: topicops.true_end_offsets(settings, t.name) for t in EVENT_TOPICS}
    keys_before = set(redis_client.scan_iter(count=1000))

    # When the bench runs against these servers
    results = run_quick(
        SCENARIOS,
        tmp_path,
        timeout=170,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "REDIS_URL": settings.redis_url,
        },
    )

    # Then the results and the report name the servers it ran on
    backend = f"existing servers: {settings.kafka_bootstrap_servers}, {settings.redis_url}"
    assert results["backend"] == backend
    assert all(results["scenarios"][name]["backend"] == backend for name in SCENARIOS)
    assert f"Backend: {backend}." in (tmp_path / "report-quick.md").read_text()
    check_e2e_fetch_and_scaling(results, tmp_path)
    # And nothing of the bench's is left: no topic, no consumer group, no key (checked before
    # this test's own reader below shows up as a group)
    assert topics_of(admin) == topics_before
    assert groups(admin) - groups_before == set()
    assert set(redis_client.scan_iter(count=1000)) - keys_before == set()
    # And the other data is untouched: keys, the record, the topics' contents, the group
    assert {key: redis_client.get(key) for key in foreign} == foreign
    reader = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"check-{run}"}
    )
    reader.assign([TopicPartition(record.topic, record.partition, record.offset)])
    message = reader.poll(10)
    reader.close()
    assert message is not None and message.error() is None
    assert (message.key(), message.value()) == (ORDERS.key_of(event).encode(), codec.encode(event))
    assert {t.name: topicops.true_end_offsets(settings, t.name) for t in EVENT_TOPICS} == (
        ends_before
    )
    assert group in groups(admin)
    committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    assert [tp.offset for tp in committed.result().topic_partitions] == [record.offset + 1]


def check_e2e_fetch_and_scaling(results: dict, out: Path) -> None:
    # Every timed order was accepted and its update reached the SSE client, at every rate
    e2e = results["scenarios"]["e2e_latency"]["figures"]
    assert e2e["errors"] == 0
    for rate in e2e["rates"]:
        assert e2e[f"r{rate}_timed_orders"] > 0
        assert e2e[f"r{rate}_p50_ms"] <= e2e[f"r{rate}_p95_ms"] <= e2e[f"r{rate}_p99_ms"]
    # The broker's own produce → consume delay was measured for both fetch waits
    fetch = results["scenarios"]["broker_fetch"]["figures"]
    assert fetch["wait500_received"] == fetch["wait100_received"] == fetch["messages"]
    # The scaling grid counted the friends who bought (a tenth of them) at every point
    scaling = results["scenarios"]["scaling"]["figures"]
    for friends in scaling["friends_axis"]:
        tag = f"f{friends}_b{scaling['buyers_for_friends_axis']}"
        assert scaling[f"{tag}_count"] == max(1, friends // 10)
        assert scaling[f"{tag}_p99_ms"] > 0
    # The machine facts and both plots are in the report
    assert results["machine"]["cpus"] and results["machine"]["memory_gb"]
    report = (out / "report-quick.md").read_text()
    for name in ("e2e_latency", "scaling"):
        assert (out / f"{name}-quick.png").stat().st_size > 10_000
        assert f"]({name}-quick.png)" in report
    assert "load average" in report.lower()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_bench_stopped_midway_still_deletes_what_it_made(
    settings: Settings,
    topics: None,
    redis_client: redis_sync.Redis,
    stop: signal.Signals,
    tmp_path: Path,
) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    topics_before = topics_of(admin)
    groups_before = groups(admin)
    keys_before = set(redis_client.scan_iter(count=1000))
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--only", "throughput", "--out", str(tmp_path)],
        cwd=ROOT,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "REDIS_URL": settings.redis_url,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When it is stopped while a worker of its own is consuming its topics
        wait_for(
            lambda: (
                bench.poll() is None
                and any(g.startswith("bench-") for g in groups(admin) - groups_before)
            ),
            60,
            "the bench's worker to join its consumer group",
            interval=0.2,
        )
        assert any(t.startswith("bench-") for t in admin.list_topics(timeout=10).topics)
        bench.send_signal(stop)
        output, _ = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    # Then it ended without results and left no topic, group or key of its own behind
    assert bench.returncode != 0 and "[bench] throughput" not in output, output
    assert "clean-up incomplete" not in output, output
    assert topics_of(admin) == topics_before
    assert groups(admin) - groups_before == set()
    assert set(redis_client.scan_iter(count=1000)) - keys_before == set()
