"""Smoke run of the ``e2e_latency``, ``broker_fetch`` and ``scaling`` bench scenarios at tiny sizes: a real stack
carries timed orders to SSE clients, every timed order's update arrives, the scaling grid is
measured, and both are plotted into the report. It checks the harness, never the speed."""

from __future__ import annotations

from pathlib import Path

from tests.support.bench import run_quick

SCENARIOS = ["e2e_latency", "broker_fetch", "scaling"]


def test_e2e_latency_and_scaling_scenarios_run_plot_and_report(tmp_path: Path) -> None:
    # When the scenarios run in quick mode into a scratch folder, then each printed its summary
    # line and reported figures (run_quick asserts both)
    results = run_quick(SCENARIOS, tmp_path)
    # And every timed order was accepted and its update reached the SSE client, at every rate
    e2e = results["scenarios"]["e2e_latency"]["figures"]
    assert e2e["errors"] == 0
    for rate in e2e["rates"]:
        assert e2e[f"r{rate}_timed_orders"] > 0
        assert e2e[f"r{rate}_p50_ms"] <= e2e[f"r{rate}_p95_ms"] <= e2e[f"r{rate}_p99_ms"]
    # And the broker's own produce → consume delay was measured for both fetch waits
    fetch = results["scenarios"]["broker_fetch"]["figures"]
    assert fetch["wait500_received"] == fetch["wait100_received"] == fetch["messages"]
    # And the scaling grid counted the friends who bought (a tenth of them) at every point
    scaling = results["scenarios"]["scaling"]["figures"]
    for friends in scaling["friends_axis"]:
        tag = f"f{friends}_b{scaling['buyers_for_friends_axis']}"
        assert scaling[f"{tag}_count"] == max(1, friends // 10)
        assert scaling[f"{tag}_p99_ms"] > 0
    # And the machine facts and both plots are in the report
    assert results["machine"]["cpus"] and results["machine"]["memory_gb"]
    report = (tmp_path / "report-quick.md").read_text()
    for name in ("e2e_latency", "scaling"):
        assert (tmp_path / f"{name}-quick.png").stat().st_size > 10_000
        assert f"]({name}-quick.png)" in report
    assert "load average" in report.lower()
