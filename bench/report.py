"""The results of a run, written: its JSON, the merged ``latest.json``, the PNG plots
(:mod:`bench.plots`) and the markdown report.

Files, in the results folder (``bench/results/`` unless ``--out`` says otherwise; ``-quick`` in
every name of a quick run):

- ``runs/<timestamp>.json``: this run's results, every repeat's figures included (the folder is
  ignored by git: a history of runs on this machine, nothing reads it);
- ``latest.json``: the newest result of every scenario, merged across runs, so a subset
  (``--only``) updates its scenarios without dropping the others'; the report and the plots are
  drawn from it;
- ``report.md`` and ``<scenario>.png`` (with ``latest.json`` and ``before-tansu.json``, what
  git keeps of ``bench/results/``);
- ``before-tansu.json`` is read, never written: the last full run on the stand-in broker, shown
  beside the current figures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def write(report: dict, out: Path, quick: bool) -> list[Path]:
    """Write ``report`` (one run) into ``out``; returns the plots drawn."""
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body = json.dumps(report, indent=2, default=str)
    suffix = "-quick" if quick else ""
    (runs / f"{stamp}{suffix}.json").write_text(body)
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
    from bench.plots import write_plots  # matplotlib is only needed here

    plots = write_plots(merged, out, suffix)
    (out / f"report{suffix}.md").write_text(markdown(merged, plots, before_tansu(out)))
    return sorted(set(plots.values()))


def before_tansu(out: Path) -> dict | None:
    """The last full run on the stand-in broker (Tansu, memory only) before the bench moved to
    Apache Kafka: ``before-tansu.json``, kept so the report shows both side by side."""
    path = out / "before-tansu.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def markdown(
    report: dict, plots: dict[str, Path] | None = None, before: dict | None = None
) -> str:
    plots = plots or {}
    m = report["machine"]
    lines = [
        "# socialproof benchmark",
        "",
        f"Run at {report['started_at']} on a **shared {m['cpus']}-core machine** "
        f"({m.get('cpu_model') or 'unknown CPU'}, {m.get('memory_gb')} GB RAM), Python "
        f"{m['python']}{' (quick smoke run: sizes are tiny)' if report['quick'] else ''}. "
        f"Load average (1, 5, 15 min) before: {m.get('load_average_before')}, after: "
        f"{m.get('load_average_after')}. Other work on the same 2 cores (test suites of other "
        "engineers, the bench's own clients) inflates latencies and lowers throughput: each "
        "scenario below records the load average around it. A slower CPU (other virtual "
        "machines on the same physical cores) does too, unseen by the load average: the host "
        "probe is a fixed single-core compute workload timed before each scenario (lower is "
        f"faster; {m.get('host_probe_ms_before')} ms before this run, "
        f"{m.get('host_probe_ms_after')} ms after). It does not see slower memory, which "
        "memory-bound figures (friends_bought, Redis-bound throughput) also vary with.",
        "",
        f"Backend: {report.get('backend', 'embedded')}.",
        "",
        "Every figure is the **median of repeated runs** (the count is in the table; a scenario "
        'with an expensive set-up repeats its measurement inside one set-up, "(3 inside)", '
        "and says how in its notes). The JSON next to this report keeps every run's figures.",
        "",
        "| scenario | summary | targets | runs | load avg before → after | host probe | time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in report["scenarios"].items():
        targets = ", ".join(
            f"{t}: {'met' if ok else ('missed' if ok is False else 'n/a')}"
            for t, ok in entry.get("targets", {}).items()
        )
        text = entry.get("summary") or f"error: {entry.get('error')}"
        load = f"{entry.get('load_average_before', '?')} → {entry.get('load_average_after', '?')}"
        inner = entry.get("figures", {}).get("inner_runs")
        runs = f"{entry.get('repeats', 1)}" + (f" ({inner} inside)" if inner else "")
        probe = f"{entry['host_probe_ms']} ms" if entry.get("host_probe_ms") else "?"
        lines.append(
            f"| {name} | {text} | {targets} | {runs} | {load} | {probe} | {entry['seconds']} s |"
        )
    if before:
        lines += [
            "",
            "## Before: the same scenarios on Tansu",
            "",
            f"Until {before['started_at'][:10]} the bench ran on Tansu, a Kafka-compatible "
            "stand-in with memory storage; its last full run "
            f"({before.get('backend', '?')}, started {before['started_at']}) beside this one:",
            "",
            f"| scenario | this report ({report.get('backend', 'embedded')}) | Tansu |",
            "| --- | --- | --- |",
        ]
        for name, entry in report["scenarios"].items():
            old = before.get("scenarios", {}).get(name)
            old_text = (old.get("summary") or f"error: {old.get('error')}") if old else "(none)"
            now_text = entry.get("summary") or f"error: {entry.get('error')}"
            lines.append(f"| {name} | {now_text} | {old_text} |")
    for name, entry in report["scenarios"].items():
        lines += ["", f"## {name}", "", entry["description"], ""]
        if name in plots:
            lines += [f"![{name}]({plots[name].name})", ""]
        if entry.get("run_at"):
            lines.append(f"- run at: {entry['run_at']}")
        if entry.get("backend"):
            lines.append(f"- backend: {entry['backend']}")
        if entry.get("load_average_before"):
            lines.append(f"- load average before: {entry['load_average_before']}")
        if entry.get("load_average_after"):
            lines.append(f"- load average after: {entry['load_average_after']}")
        runs = entry.get("runs") or []
        for key, value in entry.get("figures", {}).items():
            each = [run.get(key) for run in runs]
            spread = (
                f" (median of {', '.join(_fmt(v) for v in each)})"
                if len(runs) > 1 and all(isinstance(v, int | float) for v in each)
                else ""
            )
            lines.append(f"- `{key}`: {_fmt(value)}{spread}")
        for note in entry.get("notes", []):
            lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
