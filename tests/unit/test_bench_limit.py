"""Ingest figures against the limit (no broker, no Redis): the fractions and ratios, which limit a
figure is stated against (never one of another run), the lines ``make bench`` prints, the
report's sections, and how ``throughput`` reports a peer it could not measure."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest

from bench.limit import _subject, median_of
from bench.report import limit_fractions, limit_lines, markdown, profiles
from bench.throughput import _costs, _measure_peer, comparisons, summarize

RUN = "2026-01-01T00:00:00+00:00"


def entry(figures: dict, run_at: str = RUN, **extra) -> dict:
    return {"description": "d", "summary": "s", "figures": figures, "seconds": 1.0,
            "run_at": run_at, **extra}


def report_of(scenarios: dict) -> dict:
    machine = {"cpus": 2, "python": "3.11", "memory_gb": 4.0}
    return {"started_at": RUN, "quick": False, "machine": machine, "scenarios": scenarios}


def test_each_ingest_figure_is_a_fraction_of_the_limit_of_the_same_run() -> None:
    report = report_of({
        "limit": entry({"events_per_s": 40_000}),
        # a scenario with a limit of its own (measured on its backlog) is stated against it
        "throughput": entry(
            {"limit_events_per_s": 50_000, "batched_events_per_s": 30_000},
            ingest={"batched_events_per_s": "our worker", "peer_events_per_s": "peer"},
            limit_figure="limit_events_per_s",
        ),
        # the others against the limit scenario's
        "attribution": entry({"plain_events_per_s": 10_000},
                             ingest={"plain_events_per_s": "worker without attribution"}),
        # never against a limit of another run (latest.json merges runs)
        "faust_eos": entry({"worker_events_per_s": 8_000}, run_at="2025-12-31T00:00:00+00:00",
                           ingest={"worker_events_per_s": "our worker"}),
    })
    rows = {(r["scenario"], r["figure"]): r for r in limit_fractions(report)}
    assert rows[("throughput", "batched_events_per_s")]["pct_of_limit"] == 60.0
    assert rows[("throughput", "batched_events_per_s")]["limit_events_per_s"] == 50_000
    assert rows[("throughput", "peer_events_per_s")]["events_per_s"] is None
    assert rows[("attribution", "plain_events_per_s")]["pct_of_limit"] == 25.0
    assert rows[("faust_eos", "worker_events_per_s")]["pct_of_limit"] is None
    lines = limit_lines(report)
    assert (
        "throughput: our worker (batched_events_per_s) 30,000 ev/s = 60 % of the limit "
        "(limit on the same backlog, this run: 50,000 ev/s)" in lines
    )
    assert "throughput: peer (peer_events_per_s) not measured" in lines
    assert (
        "attribution: worker without attribution (plain_events_per_s) 10,000 ev/s = 25 % of "
        "the limit (limit scenario, this run: 40,000 ev/s)" in lines
    )
    assert (
        "faust_eos: our worker (worker_events_per_s) 8,000 ev/s; no limit measured in the "
        "same run" in lines
    )
    text = markdown(report)
    assert "## Ingest against the limit" in text
    assert (
        "| attribution | worker without attribution | `plain_events_per_s` | 10,000 | "
        "40,000 (limit scenario, this run) | 25 % | — | — |" in text
    )


def test_each_ingest_figure_has_its_ratio_to_the_peer_and_the_baseline_of_the_same_run() -> None:
    # Given a run whose throughput measured our worker, the Quix peer and the per-event baseline
    figures = {"limit_events_per_s": 40_000, "batched_events_per_s": 20_000,
               "peer_events_per_s": 8_000, "baseline_events_per_s": 1_000}
    ingest = {"batched_events_per_s": "our worker", "peer_events_per_s": "Quix peer",
              "baseline_events_per_s": "baseline"}
    report = report_of({
        "limit": entry({"events_per_s": 50_000}),
        "throughput": entry(figures, ingest=ingest, limit_figure="limit_events_per_s"),
        "faust_eos": entry({"worker_events_per_s": 24_000},
                           ingest={"worker_events_per_s": "our worker"}),
        # a figure of another run (latest.json merges runs) is not compared with this run's peer
        "attribution": entry({"plain_events_per_s": 10_000}, run_at="2025-12-31T00:00:00+00:00",
                             ingest={"plain_events_per_s": "worker"}),
    })
    # When the fractions are computed
    rows = {(r["scenario"], r["figure"]): r for r in limit_fractions(report)}
    # Then every figure of the same run has both ratios, but none against itself
    assert (rows[("throughput", "batched_events_per_s")]["x_peer"],
            rows[("throughput", "batched_events_per_s")]["x_baseline"]) == (2.5, 20.0)
    assert rows[("throughput", "peer_events_per_s")]["x_peer"] is None
    assert rows[("throughput", "peer_events_per_s")]["x_baseline"] == 8.0
    assert rows[("throughput", "baseline_events_per_s")]["x_baseline"] is None
    assert (rows[("faust_eos", "worker_events_per_s")]["x_peer"],
            rows[("faust_eos", "worker_events_per_s")]["x_baseline"]) == (3.0, 24.0)
    assert rows[("attribution", "plain_events_per_s")]["x_peer"] is None
    assert (
        "throughput: our worker (batched_events_per_s) 20,000 ev/s = 50 % of the limit (limit on "
        "the same backlog, this run: 40,000 ev/s); 2.5x the Quix peer, 20x the per-event "
        "baseline (the peer and the baseline on throughput's backlog, this run)"
        in limit_lines(report)
    )
    assert "| 48 % | 3x | 24x |" in markdown(report)  # faust_eos: 24,000 of the limit's 50,000


def test_a_report_without_ingest_figures_has_no_limit_section() -> None:
    text = markdown(report_of({"demo": entry({"p99_ms": 2})}))
    assert "Ingest against the limit" not in text and "Where the time goes" not in text


def test_the_report_includes_the_profiles_present(tmp_path: Path) -> None:
    (tmp_path / "profile-worker-python.md").write_text("# Python\n\n## Decode\n40 % in pydantic\n")
    notes = profiles(tmp_path)
    assert list(notes) == ["profile-worker-python.md"]  # the Redis one is absent
    text = markdown(report_of({"demo": entry({"x": 1})}), notes=notes)
    section = text[text.index("## Where the time goes"):]
    assert "[profile-worker-python.md](profile-worker-python.md)" in section
    # its headings sit under the report's section
    assert "### profile-worker-python.md" in section and "#### Python" in section
    assert "##### Decode\n40 % in pydantic" in section


def test_throughput_fractions_and_ratios() -> None:
    figures = {"limit_events_per_s": 40_000, "batched_events_per_s": 26_000,
               "peer_events_per_s": 13_000, "baseline_events_per_s": 1_000}
    assert comparisons(figures) == {
        "batched_pct_of_limit": 65.0, "peer_pct_of_limit": 32.5, "baseline_pct_of_limit": 2.5,
        "vs_peer": 2.0, "ratio": 26.0,
    }
    # no peer measured: no fraction or ratio for it, the others stand
    del figures["peer_events_per_s"]
    assert set(comparisons(figures)) == {"batched_pct_of_limit", "baseline_pct_of_limit", "ratio"}
    # no limit: no fractions
    assert comparisons({"batched_events_per_s": 5, "baseline_events_per_s": 0}) == {}


def test_the_throughput_summary_names_every_ingest_and_an_unavailable_peer() -> None:
    figures = {"limit_events_per_s": 40_000, "batched_events_per_s": 26_000,
               "baseline_events_per_s": 1_000, "batched_window_events_per_s": [25_000, 27_000],
               "windows": 2, "events_per_window": 100, "batched_cpu_us_per_event": 30.5,
               "batched_redis_cpu_us_per_event": 20.0, "limit_cpu_us_per_event": 20.1,
               "peer_unavailable": ".venv-peer does not exist"}
    figures.update(comparisons(figures))
    text = summarize(figures)
    assert text.startswith("limit 40,000 ev/s; our worker 26,000 (65 % of the limit); ")
    assert "peer unavailable (.venv-peer does not exist)" in text
    assert "worker = 26.0x the baseline; CPU µs/event worker 30.5 + Redis 20.0, limit 20.1" in text
    figures.update(peer_events_per_s=13_000, peer_products_wrong=0, peer_cpu_us_per_event=90.0)
    figures.update(comparisons(figures))
    assert "Quix peer 13,000 (32.5 % of the limit), 0 products wrong" in summarize(figures)
    assert "worker = 2.0x the peer, 26.0x the baseline" in summarize(figures)
    assert "Redis 20.0, peer 90.0, limit 20.1" in summarize(figures)


def test_cpu_per_event_spans_the_timed_samples() -> None:
    # (monotonic, events, process CPU s, Redis CPU s): 1,000 events for 0.02 s + 0.01 s of CPU
    samples = [(0.0, 0, 1.0, 5.0), (1.0, 0, 1.5, 5.0), (2.0, 400, 1.51, 5.004),
               (3.0, 1000, 1.52, 5.01)]
    assert _costs(samples, with_redis=True) == {
        "cpu_us_per_event": 20.0, "redis_cpu_us_per_event": 10.0,
    }
    assert _costs(samples, with_redis=False) == {"cpu_us_per_event": 20.0}
    # no CPU reading at the start of work (a backlog done before the first poll): none made up
    assert _costs([(0.0, 0, math.nan, math.nan), (1.0, 10, 2.0, 1.0)], with_redis=True) == {}


class PeerUnavailable(RuntimeError):
    pass


@pytest.fixture
def fake_peer(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("bench.quix_peer")
    module.PeerUnavailable = PeerUnavailable  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.quix_peer", module)
    # `from bench import quix_peer` takes the package's attribute once the real module was
    # imported (by an earlier test in the same session), not sys.modules' entry
    import bench

    monkeypatch.setattr(bench, "quix_peer", module, raising=False)
    return module


def test_an_unavailable_or_failing_peer_is_a_figure_saying_why(fake_peer) -> None:
    def missing(*_a, **_k):
        raise PeerUnavailable(".venv-peer does not exist: make peer-venv")

    fake_peer.measure_peer = missing
    assert _measure_peer(None, [], [], 0) == {  # type: ignore[arg-type]
        "peer_unavailable": ".venv-peer does not exist: make peer-venv"
    }

    def broken(*_a, **_k):
        raise TimeoutError("not done in 300 s")

    fake_peer.measure_peer = broken
    assert _measure_peer(None, [], [], 0) == {  # type: ignore[arg-type]
        "peer_unavailable": "the peer failed: TimeoutError: not done in 300 s"
    }
    fake_peer.measure_peer = lambda *_a, **_k: {
        "events_per_s": 9_876.4, "cpu_us_per_event": 95.0, "peak_rss_mb": 120.5,
        "events_per_s_to_committed": 9_000.2, "start_to_first_s": 14.1,
        "products_checked": 1000, "products_wrong": 0, "first_differences": [],
    }
    assert _measure_peer(None, [], [], 0) == {  # type: ignore[arg-type]
        "peer_events_per_s": 9876, "peer_cpu_us_per_event": 95.0, "peer_rss_mb": 120.5,
        "peer_events_per_s_to_committed": 9_000.2, "peer_start_to_first_s": 14.1,
        "peer_products_checked": 1000, "peer_products_wrong": 0,
    }


def test_the_limit_counts_each_event_under_its_product_or_user() -> None:
    assert _subject({"payload": {"product_id": "p1", "user_id": "u1"}}) == "p1"
    assert _subject({"payload": {"lines": [{"product_id": "p9"}], "user_id": "u1"}}) == "p9"
    assert _subject({"payload": {"user_id": "u4"}}) == "u4"


def test_the_limit_reports_the_median_of_its_passes() -> None:
    passes = [
        {"events_per_s": 30_000, "cpu_us_per_event": 21.0, "rss_mb": 60.0},
        {"events_per_s": 45_000, "cpu_us_per_event": 19.0, "rss_mb": 61.0},
        {"events_per_s": 40_000, "cpu_us_per_event": 20.0, "rss_mb": 59.0},
    ]
    assert median_of(passes) == {
        "limit_events_per_s": 40_000, "limit_cpu_us_per_event": 20.0, "limit_rss_mb": 60.0,
        "limit_events_per_s_each": [30_000, 45_000, 40_000],
    }
