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
  beside the current figures;
- the profiles of the worker (:data:`PROFILES`, written by hand from py-spy and Redis
  measurements) are read, never written: the report includes them under "Where the time goes".

Every ingest figure a scenario flags (``Result.ingest``) is stated as a fraction of the limit
measured in the same run (:func:`limit_fractions`): the runner prints those lines
(:func:`limit_lines`) and the report tabulates them.
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
    (out / f"report{suffix}.md").write_text(
        markdown(merged, plots, before_tansu(out), profiles(out))
    )
    return sorted(set(plots.values()))


#: the profiles' notes the report includes, in this order, when present in the results folder
PROFILES = ("PROFILES.md", "profile-worker-python.md", "profile-worker-redis.md")


def profiles(out: Path) -> dict[str, str]:
    """{file name: text} of the :data:`PROFILES` present in ``out``."""
    return {name: (out / name).read_text() for name in PROFILES if (out / name).exists()}


#: the comparisons each ingest figure is stated against besides the limit: row key -> the
#: ``throughput`` figure
PEER_FIGURES = {"x_peer": "peer_events_per_s", "x_baseline": "baseline_events_per_s"}


def limit_fractions(report: dict) -> list[dict[str, Any]]:
    """Every flagged ingest figure (a scenario's ``ingest``) with the limit it is stated against
    and its fraction of it (%). The limit is the scenario's own (``limit_figure``: measured on
    its backlog), else the ``limit`` scenario's ``events_per_s`` when that ran in the same run
    (same ``run_at``), else none: a limit from another run is never used. Each row also has its
    ratio to the Quix Streams peer and to the Faust per-event baseline, measured by
    ``throughput`` on its backlog in the same run (``x_peer``, ``x_baseline``; None for the peer
    and the baseline themselves, or when ``throughput`` did not run in the same run)."""
    scenarios = report.get("scenarios", {})
    reference = scenarios.get("limit") or {}
    throughput = scenarios.get("throughput") or {}
    peers = {
        key: (throughput.get("figures") or {}).get(figure) for key, figure in PEER_FIGURES.items()
    }
    rows = []
    for name, entry in scenarios.items():
        figures = entry.get("figures") or {}
        own = figures.get(entry.get("limit_figure") or "")
        for figure, who in (entry.get("ingest") or {}).items():
            rate = figures.get(figure)
            limit, source = None, "no limit measured in the same run"
            if own:
                limit, source = own, "limit on the same backlog, this run"
            elif reference.get("figures", {}).get("events_per_s") and reference.get(
                "run_at"
            ) == entry.get("run_at"):
                limit, source = reference["figures"]["events_per_s"], "limit scenario, this run"
            numeric = isinstance(rate, int | float) and not isinstance(rate, bool)
            ratios = {
                key: round(rate / other, 2)
                if numeric
                and other
                and throughput.get("run_at") == entry.get("run_at")
                and not (name == "throughput" and figure == PEER_FIGURES[key])
                else None
                for key, other in peers.items()
            }
            rows.append(
                {
                    "scenario": name,
                    "figure": figure,
                    "who": who,
                    "events_per_s": rate if numeric else None,
                    "limit_events_per_s": limit,
                    "limit_source": source,
                    "pct_of_limit": round(100 * rate / limit, 1) if numeric and limit else None,
                    **ratios,
                }
            )
    return rows


def limit_line(row: dict[str, Any]) -> str:
    """One flagged ingest figure in words, e.g. ``throughput: our worker
    (batched_events_per_s) 17,500 ev/s = 41 % of the limit (limit on the same backlog, this
    run: 42,600 ev/s)``."""
    head = f"{row['scenario']}: {row['who']} ({row['figure']})"
    if row["events_per_s"] is None:
        return f"{head} not measured"
    if row["pct_of_limit"] is None:
        return f"{head} {row['events_per_s']:,} ev/s; {row['limit_source']}"
    return (
        f"{head} {row['events_per_s']:,} ev/s = {row['pct_of_limit']:g} % of the limit "
        f"({row['limit_source']}: {row['limit_events_per_s']:,} ev/s){_versus(row)}"
    )


def _versus(row: dict[str, Any]) -> str:
    """``; 2.21x the Quix peer, 19.7x the per-event baseline (throughput, this run)``, or ''."""
    parts = [
        f"{row[key]:g}x the {label}"
        for key, label in (("x_peer", "Quix peer"), ("x_baseline", "per-event baseline"))
        if row.get(key) is not None
    ]
    return (
        f"; {', '.join(parts)} (the peer and the baseline on throughput's backlog, this run)"
        if parts
        else ""
    )


def limit_lines(report: dict) -> list[str]:
    return [limit_line(row) for row in limit_fractions(report)]


def _demoted(text: str, levels: int = 3) -> str:
    """Markdown ``text`` with its headings ``levels`` deeper, to sit under a report section."""
    return "\n".join(
        "#" * levels + line if line.startswith("#") else line for line in text.splitlines()
    )


def before_tansu(out: Path) -> dict | None:
    """The last full run on the stand-in broker (Tansu, memory only) before the bench moved to
    Apache Kafka: ``before-tansu.json``, kept so the report shows both side by side."""
    path = out / "before-tansu.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def markdown(
    report: dict,
    plots: dict[str, Path] | None = None,
    before: dict | None = None,
    notes: dict[str, str] | None = None,
) -> str:
    """The report; ``notes``: the profiles to include ({file name: markdown})."""
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
    rows = limit_fractions(report)
    if rows:
        lines += [
            "",
            "## Ingest against the limit",
            "",
            "Every ingest figure as a fraction of the limit measured in the same run: what this "
            "machine can do at all on the same broker, Redis and data (batch consume, "
            "orjson, two pipelined Redis writes per event, commit; the `limit` scenario, or "
            "the limit a scenario measured on its own backlog). Each scenario's own events "
            "differ from the limit's (the throughput workload) where it has no limit of its "
            "own.",
            "",
            "| scenario | who | figure | events/s | limit (events/s) | % of the limit "
            "| x the Quix peer | x the per-event baseline |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in rows:
            rate = f"{row['events_per_s']:,}" if row["events_per_s"] is not None else "—"
            limit = (
                f"{row['limit_events_per_s']:,} ({row['limit_source']})"
                if row["limit_events_per_s"]
                else row["limit_source"]
            )
            pct = f"{row['pct_of_limit']:g} %" if row["pct_of_limit"] is not None else "—"
            versus = " | ".join(
                f"{row[key]:g}x" if row.get(key) is not None else "—" for key in PEER_FIGURES
            )
            lines.append(
                f"| {row['scenario']} | {row['who']} | `{row['figure']}` | {rate} | {limit} "
                f"| {pct} | {versus} |"
            )
    if notes:
        lines += [
            "",
            "## Where the time goes",
            "",
            "The worker's profiles (written from py-spy and Redis measurements; their own "
            "dates and loads are in them): " + ", ".join(f"[{n}]({n})" for n in notes) + ".",
        ]
        for name, text in notes.items():
            lines += ["", f"### {name}", "", _demoted(text.strip())]
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
