"""Run the benchmark scenarios: ``python -m bench [--only a,b] [--quick] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import scenarios  # noqa: F401  (registers the scenarios)
from bench.env import bench_env
from bench.registry import REGISTRY, Result

RESULTS = Path(__file__).resolve().parent / "results"


def run(names: list[str], quick: bool, out: Path) -> dict:
    report: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        },
        "scenarios": {},
    }
    for name in names:
        sc = REGISTRY[name]
        started = time.monotonic()
        try:
            with bench_env() as env:
                result: Result = sc.run(env, quick)
            entry = {
                "description": sc.description,
                "summary": result.summary,
                "figures": result.figures,
                "targets": result.verdicts(),
                "notes": result.notes,
            }
        except Exception as exc:  # one failing scenario must not hide the others' figures
            entry = {
                "description": sc.description,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        entry["seconds"] = round(time.monotonic() - started, 1)
        entry["run_at"] = report["started_at"]
        # other work on the machine skews every figure: record how busy it was
        entry["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        report["scenarios"][name] = entry
        line = entry.get("summary") or entry.get("error")
        verdicts = entry.get("targets", {})
        mark = (
            "ok" if verdicts and all(verdicts.values()) else ("n/a" if not verdicts else "MISSED")
        )
        print(f"[bench] {name}: {line} [{mark}] ({entry['seconds']}s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body = json.dumps(report, indent=2, default=str)
    suffix = "-quick" if quick else ""
    (out / f"{stamp}{suffix}.json").write_text(body)
    # latest*.json keeps the newest result of every scenario, so running a subset (--only)
    # updates its scenarios without dropping the others' figures from the report
    latest_path = out / f"latest{suffix}.json"
    merged = dict(report)
    if latest_path.exists():
        try:
            previous = json.loads(latest_path.read_text())
            merged["scenarios"] = {**previous.get("scenarios", {}), **report["scenarios"]}
        except ValueError:
            pass
    latest_path.write_text(json.dumps(merged, indent=2, default=str))
    (out / f"report{suffix}.md").write_text(markdown(merged))
    return report


def markdown(report: dict) -> str:
    lines = [
        "# socialproof benchmark",
        "",
        f"Run at {report['started_at']} on {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}{' (quick smoke run: sizes are tiny)' if report['quick'] else ''}"
        f"; load average before: {report['machine'].get('load_average_before')}.",
        "",
        "| scenario | summary | targets | time |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in report["scenarios"].items():
        targets = ", ".join(
            f"{t}: {'met' if ok else ('missed' if ok is False else 'n/a')}"
            for t, ok in entry.get("targets", {}).items()
        )
        text = entry.get("summary") or f"error: {entry.get('error')}"
        lines.append(f"| {name} | {text} | {targets} | {entry['seconds']} s |")
    for name, entry in report["scenarios"].items():
        lines += ["", f"## {name}", "", entry["description"], ""]
        if entry.get("run_at"):
            lines.append(f"- run at: {entry['run_at']}")
        if entry.get("load_average_after"):
            lines.append(f"- load average after: {entry['load_average_after']}")
        for key, value in entry.get("figures", {}).items():
            lines.append(f"- `{key}`: {value}")
        for note in entry.get("notes", []):
            lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (harness smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for sc in REGISTRY.values():
            print(f"{sc.name}: {sc.description}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    report = run(names, args.quick, args.out)
    return 1 if any("error" in e for e in report["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
