"""Smoke run of ``make bench``: every scenario runs at tiny sizes, prints its one-line summary and
lands in the JSON results and the markdown report. It checks the harness, never the speed.

The quick scenarios (RUN_TOGETHER) run on the session's broker and Redis, in the bench's
existing-servers mode (topics under a prefix of their own, fresh namespaces and groups, all
deleted afterwards): no broker is started per scenario. faust_eos runs on the bench's own embedded broker and Redis,
so that environment is smoke-tested here too."""

from __future__ import annotations

from pathlib import Path

from socialproof.settings import Settings
from tests.support.bench import run_quick

#: the processor's scenarios (other scenarios in the registry have their own smoke tests);
#: faust_eos (two designs, SIGKILLs and restarts, about a minute) and cluster_scaling (its own
#: redis-servers and Redis Cluster) run on their own below
SCENARIOS = [
    "limit", "throughput", "attribution", "burst_lag", "friends_bought", "faust_eos",
    "cluster_scaling",
]  # fmt: skip
RUN_TOGETHER = SCENARIOS[:5]


def test_every_bench_scenario_runs_and_reports(settings: Settings, tmp_path: Path) -> None:
    # When the bench runs in quick mode into a scratch folder, then each scenario printed its
    # summary line and reported figures (run_quick asserts both)
    servers = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
    }
    results = run_quick(RUN_TOGETHER, tmp_path, env=servers)["scenarios"]
    # the limit pipeline read the whole backlog (Redis CPU is not reported on shared servers)
    limit = results["limit"]["figures"]
    assert limit["events_per_s"] > 0 and limit["cpu_us_per_event"] > 0
    assert "redis_cpu_us_per_event" not in limit
    throughput = results["throughput"]["figures"]
    assert throughput["batched_processed"] == throughput["events_per_window"]
    assert throughput["baseline_events_per_s"] > 0 and throughput["ratio"] > 0
    # on the same backlog, the limit too, and each ingest stated as a fraction of it (the peer
    # is not run in a quick run: its own test runs it)
    assert throughput["limit_events_per_s"] > 0 and throughput["batched_pct_of_limit"] > 0
    assert "quick" in throughput["peer_unavailable"]
    assert results["friends_bought"]["figures"]["dense_count"] > 0
    # attribution measured both variants, with purchases through links and promotions
    attribution = results["attribution"]["figures"]
    assert attribution["plain_events_per_s"] > 0 and attribution["referred_events_per_s"] > 0
    assert attribution["referred_purchases"] > 0 and attribution["promotions"] > 0
    # the burst's lag was followed over time and came back under 1 s
    burst = results["burst_lag"]["figures"]
    assert burst["recovered_bursts"] == burst["bursts"] == 1
    assert burst["timelines"][0] and burst["lag_back_under_1s_s"] is not None
    # and the worker's own lag gauge moved with the burst, in seconds from Kafka's timestamps
    assert 0 < burst["worker_lag_gauge_peak_s"] < 60
    report = (tmp_path / "report-quick.md").read_text()
    assert all(f"## {name}" in report for name in RUN_TOGETHER)
    assert "| throughput | our worker | `batched_events_per_s` |" in report
    # And the throughput and burst figures are drawn and embedded in the report
    for plot in ("throughput-quick.png", "burst_lag-quick.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
        assert f"]({plot})" in report


def test_faust_exactly_once_scenario_compares_both_designs_after_kills(tmp_path: Path) -> None:
    # When the Faust exactly-once scenario runs in quick mode, then it printed its summary line
    # and reported figures (run_quick asserts both)
    results = run_quick(["faust_eos"], tmp_path)["scenarios"]
    figures = results["faust_eos"]["figures"]
    # And both designs were timed on the backlog
    assert figures["worker_events_per_s"] > 0 and figures["faust_events_per_s"] > 0
    assert figures["throughput_ratio"] > 0
    # And each was killed and restarted, the first event after each restart timed
    for design in ("worker", "faust"):
        assert len(figures[f"{design}_recovery_s_each"]) == figures["kills"] >= 1
        assert 0 < figures[f"{design}_to_partitions_s"] <= figures[f"{design}_recovery_s"]
    # And the kept design counted every product exactly after the kills, its served views too;
    # Faust's counts were read both from its live table and from its changelog (compared with
    # the same oracle: their errors are a measurement here, not a failure)
    assert figures["worker_redis_products_wrong"] == figures["worker_views_wrong"] == 0
    assert figures["worker_redis_count_sum"] == figures["oracle_count_sum"] > 0
    for source in ("served", "changelog"):
        assert figures[f"faust_{source}_count_sum"] > 0
    assert "## faust_eos" in (tmp_path / "report-quick.md").read_text()


def test_cluster_scaling_scenario_measures_every_store_and_node(
    settings: Settings, tmp_path: Path
) -> None:
    # When the cluster scaling scenario runs in quick mode (its own redis-servers and Redis
    # Cluster; the session's broker and Redis only as the bench's environment), then it printed
    # its summary line and reported figures (run_quick asserts both)
    servers = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "REDIS_URL": settings.redis_url,
    }
    figures = run_quick(["cluster_scaling"], tmp_path, env=servers)["scenarios"]["cluster_scaling"][
        "figures"
    ]
    for store in ("one1", "one12", "cluster12"):
        for writers in (1, 2):
            tag = f"{store}_w{writers}"
            # And every store applied the slice and its Redis CPU was measured
            assert figures[f"{tag}_events_per_s"] > 0 and figures[f"{tag}_redis_us"] > 0
            assert figures[f"{tag}_writer_us"] > 0
        assert figures[f"{store}_graph_bytes"] > 0
    # And the sharded stores made more script calls per event than one shard (13 shards: an
    # order's lines and every user fact go to several), and wrote the graph 13 times
    calls = "w1_script_calls_per_1000_events"
    assert figures[f"one12_{calls}"] > figures[f"one1_{calls}"] > 0
    assert figures["one12_shard_ops_per_event"] > figures["one1_shard_ops_per_event"] == 1
    assert figures["one12_graph_bytes"] > 5 * figures["one1_graph_bytes"]
    # And on the cluster every master worked, the replicas replicated, and a projection came out
    assert all(us > 0 for us in figures["cluster12_w1_master_us_each"])
    assert len(figures["cluster12_w1_master_us_each"]) == 3
    assert figures["cluster12_w1_replica_us"] > 0
    assert figures["cluster12_w2_events_per_s_per_master"] > 0
