"""Running ``make bench`` scenarios at smoke size from tests (the harness, never the speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_quick(
    scenarios: list[str], out: Path, timeout: float = 170, env: dict[str, str] | None = None
) -> dict:
    """Run the scenarios with ``--quick`` into ``out`` (``env``: variables to set for the run);
    assert each printed its one-line summary and reported figures without an error; return the
    whole results JSON."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            ",".join(scenarios),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[bench] ")]
    assert [line.split(":")[0][8:] for line in lines] == scenarios
    results = json.loads((out / "latest-quick.json").read_text())
    for name in scenarios:
        entry = results["scenarios"][name]
        assert "error" not in entry, entry.get("traceback")
        assert entry["figures"] and entry["summary"]
    return results
