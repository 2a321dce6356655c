"""Smoke run of ``make bench``: every scenario runs at tiny sizes, prints its one-line summary and
lands in the JSON results and the markdown report. It checks the harness, never the speed."""

from __future__ import annotations

from pathlib import Path

from tests.support.bench import run_quick

#: the processor's scenarios (other scenarios in the registry have their own smoke tests)
SCENARIOS = ["throughput", "burst_lag", "friends_bought"]


def test_every_bench_scenario_runs_and_reports(tmp_path: Path) -> None:
    # When the bench runs in quick mode into a scratch folder, then each scenario printed its
    # summary line and reported figures (run_quick asserts both)
    results = run_quick(SCENARIOS, tmp_path)["scenarios"]
    throughput = results["throughput"]["figures"]
    assert throughput["batched_processed"] == throughput["events_per_window"]
    assert throughput["baseline_events_per_s"] > 0 and throughput["ratio"] > 0
    assert results["friends_bought"]["figures"]["dense_count"] > 0
    # the burst's lag was followed over time and came back under 1 s
    burst = results["burst_lag"]["figures"]
    assert burst["recovered_bursts"] == burst["bursts"] == 1
    assert burst["timelines"][0] and burst["lag_back_under_1s_s"] is not None
    # and the worker's own lag gauge moved with the burst, in seconds from Kafka's timestamps
    assert 0 < burst["worker_lag_gauge_peak_s"] < 60
    report = (tmp_path / "report-quick.md").read_text()
    assert all(f"## {name}" in report for name in SCENARIOS)
    # And the throughput and burst figures are drawn and embedded in the report
    for plot in ("throughput-quick.png", "burst_lag-quick.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
        assert f"]({plot})" in report
