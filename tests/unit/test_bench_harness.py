"""The bench harness's own logic (no broker, no Redis): medians over repeated runs, window rates,
the report, and that every registered scenario has a smoke run in the test suite."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import host_probe_ms, median_figures
from bench.registry import REGISTRY, Result
from bench.report import markdown
from bench.throughput import _window_rates
from tests.integration import (
    test_bench_existing_servers,
    test_notifier_bench,
    test_processor_bench,
)


def test_every_registered_scenario_has_a_smoke_run() -> None:
    # (the existing-servers run smokes e2e_latency, broker_fetch and scaling, and runs some of
    # the others again to prove it leaves nothing behind)
    smoked = (
        set(test_processor_bench.SCENARIOS)
        | set(test_notifier_bench.SCENARIOS)
        | set(test_bench_existing_servers.SCENARIOS)
    )
    assert smoked == set(REGISTRY)


def test_numeric_figures_are_medians_and_the_rest_comes_from_the_first_run() -> None:
    runs = [
        {"rate": 10, "p99": 1.5, "label": "a", "each": [1], "ok": True},
        {"rate": 30, "p99": 0.5, "label": "b", "each": [2], "ok": False},
        {"rate": 20, "p99": 9.25, "label": "c", "each": [3], "ok": True},
    ]
    merged = median_figures(runs)
    assert merged == {"rate": 20, "p99": 1.5, "label": "a", "each": [1], "ok": True}
    assert isinstance(merged["rate"], int)


def test_a_figure_missing_in_one_run_is_not_averaged_away() -> None:
    merged = median_figures([{"drain": 1.0}, {"drain": None}, {"drain": 3.0}])
    assert merged["drain"] == 1.0  # not a median of two: reported as the first run had it


def test_window_rates_by_count_and_by_time() -> None:
    # 100 events/s from t=1 (the last idle sample) on, sampled every second
    samples = [(0.0, 0), (1.0, 0)] + [(1.0 + s, 100 * s) for s in range(1, 7)]
    assert _window_rates(samples, 3, per_window=200) == [100.0, 100.0, 100.0]
    assert _window_rates(samples, 2, seconds=3.0) == [100.0, 100.0]
    # a backlog that ends early yields only the windows it filled
    assert _window_rates(samples, 5, per_window=200) == [100.0, 100.0, 100.0]


def test_the_report_names_runs_load_and_plots() -> None:
    report = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "quick": False,
        "machine": {
            "cpus": 2,
            "cpu_model": "test CPU",
            "memory_gb": 4.0,
            "python": "3.11",
            "load_average_before": [1.0, 1.0, 1.0],
            "load_average_after": [2.0, 1.5, 1.0],
        },
        "scenarios": {
            "demo": {
                "description": "a demo",
                "summary": "p99 2 ms",
                "figures": {"p99_ms": 2, "inner_runs": 3},
                "targets": {"p99_ms < 5 ms": True},
                "notes": ["a note"],
                "repeats": 3,
                "runs": [{"p99_ms": 1}, {"p99_ms": 2}, {"p99_ms": 7}],
                "seconds": 1.0,
                "load_average_before": [1.0, 1.0, 1.0],
                "load_average_after": [2.0, 1.5, 1.0],
                "host_probe_ms": 41.5,
            }
        },
    }
    text = markdown(report, {"demo": Path("demo.png")})
    assert "shared 2-core machine" in text and "4.0 GB RAM" in text
    assert "| demo | p99 2 ms | p99_ms < 5 ms: met | 3 (3 inside) | [1.0, 1.0, 1.0] → " in text
    assert "| 41.5 ms | 1.0 s |" in text
    assert "- `p99_ms`: 2 (median of 1, 2, 7)" in text
    assert "![demo](demo.png)" in text
    assert "Before: the same scenarios on Tansu" not in text
    # With the last run on the stand-in broker beside it, each scenario's summaries side by side
    before = {"started_at": "2026-11-28T10:39:07+00:00", "backend": "embedded (Tansu)",
              "scenarios": {"demo": {"summary": "p99 9 ms"}}}
    text = markdown(report, {}, before)
    assert "| demo | p99 2 ms | p99 9 ms |" in text


def test_a_summary_can_describe_the_median_figures() -> None:
    result = Result(summary=lambda f: f"{f['x']} ev/s", figures={"x": 1})
    assert result.summarize({"x": 5}) == "5 ev/s"
    assert Result(summary="fixed", figures={}).summarize({"x": 5}) == "fixed"


def test_the_host_probe_times_a_fixed_workload() -> None:
    # a few ms to a few hundred on any machine; the best of several runs, so never 0
    assert 1 < host_probe_ms(repeats=2) < 2_000
