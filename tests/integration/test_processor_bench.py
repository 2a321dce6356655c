"""Smoke run of ``make bench``: every scenario runs at tiny sizes, prints its one-line summary and
lands in the JSON results and the markdown report. It checks the harness, never the speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the processor's scenarios (other scenarios in the registry have their own smoke tests)
SCENARIOS = ["throughput", "burst_lag", "friends_bought"]


def test_every_bench_scenario_runs_and_reports(tmp_path: Path) -> None:
    # When the bench runs in quick mode into a scratch folder
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", ",".join(SCENARIOS)]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Then each scenario printed one summary line
    lines = [line for line in done.stdout.splitlines() if line.startswith("[bench] ")]
    assert [line.split(":")[0][8:] for line in lines] == SCENARIOS
    # And the results hold measured figures for each, and the report names them
    results = json.loads((tmp_path / "latest-quick.json").read_text())
    for name in SCENARIOS:
        entry = results["scenarios"][name]
        assert "error" not in entry, entry.get("traceback")
        assert entry["figures"] and entry["summary"]
    throughput = results["scenarios"]["throughput"]["figures"]
    assert throughput["batched_processed"] == throughput["events_per_window"]
    assert throughput["baseline_events_per_s"] > 0 and throughput["ratio"] > 0
    assert results["scenarios"]["friends_bought"]["figures"]["dense_count"] > 0
    report = (tmp_path / "report-quick.md").read_text()
    assert all(f"## {name}" in report for name in SCENARIOS)
    # And the throughput and burst figures are drawn and embedded in the report
    for plot in ("throughput-quick.png", "burst_lag-quick.png"):
        assert (tmp_path / plot).stat().st_size > 10_000
        assert f"]({plot})" in report
