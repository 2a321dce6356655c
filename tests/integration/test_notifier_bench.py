"""Smoke run of the notifier's ``make bench`` scenarios at tiny sizes: they run, report figures,
and every final state reached every SSE client (a correctness check; speed is not judged here).

They run on the session's broker and Redis, in the bench's existing-servers mode (topics under a
prefix of their own, fresh Redis namespaces, all deleted afterwards): no broker is started per
scenario. The bench's own embedded servers are smoke-tested by test_processor_bench.py."""

from __future__ import annotations

from pathlib import Path

from socialproof.settings import Settings
from tests.support.bench import run_quick

SCENARIOS = ["sse_fanout", "sse_fanout_x5", "read_api", "read_api_2p"]


def test_the_notifier_bench_scenarios_run_and_report(
    settings: Settings, topics: None, tmp_path: Path
) -> None:
    servers = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
    }
    results = run_quick(SCENARIOS, tmp_path, env=servers)["scenarios"]
    for name in ("sse_fanout", "sse_fanout_x5"):
        figures = results[name]["figures"]
        assert figures["connections"] == 200 and figures["deliveries"] > 0
        assert figures["missed"] == 0  # every client ended with the latest state
        assert 0 < figures["rss_connected_mb"] < 500
    assert (tmp_path / "sse_fanout-quick.png").stat().st_size > 10_000
    for name, processes in (("read_api", 1), ("read_api_2p", 2)):
        read = results[name]["figures"]
        assert read["requests"] > 0 and read["errors"] == 0
        assert read["processes"] == processes
