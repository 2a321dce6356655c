"""Smoke run of the notifier's ``make bench`` scenarios at tiny sizes: they run, report figures,
and every final state reached every SSE client (a correctness check; speed is not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["sse_fanout", "sse_fanout_x5", "read_api"]


def test_the_notifier_bench_scenarios_run_and_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            ",".join(SCENARIOS),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "latest-quick.json").read_text())["scenarios"]
    for name in SCENARIOS:
        assert "error" not in results[name], results[name].get("traceback")
    for name in ("sse_fanout", "sse_fanout_x5"):
        figures = results[name]["figures"]
        assert figures["connections"] == 200 and figures["deliveries"] > 0
        assert figures["missed"] == 0  # every client ended with the latest state
        assert 0 < figures["rss_connected_mb"] < 500
    assert (tmp_path / "sse_fanout-quick.png").stat().st_size > 10_000
    read = results["read_api"]["figures"]
    assert read["requests"] > 0 and read["errors"] == 0
