"""Run the benchmark scenarios: ``python -m bench [--only a,b] [--quick] [--repeats N] [--out DIR]``.

Each scenario runs ``repeats`` times (its registered default, 1 with ``--quick``) in a fresh
environment; every numeric figure reported is the median of the runs, and the JSON keeps each
run's figures. Results: ``<out>/runs/<timestamp>.json`` (not in git), ``latest.json`` (newest
result of every scenario, merged across partial runs), ``report.md`` and PNG plots
(:mod:`bench.report`). At the end it prints, for every ingest figure of the run's scenarios, its
fraction of the limit measured in the same run (``[bench-limit]`` lines; :mod:`bench.limit`
runs first, so a full run always has one).

Backend: a fresh embedded broker and redis-server per run, or, with ``KAFKA_BOOTSTRAP_SERVERS``
and ``REDIS_URL`` both set, those existing servers (own topics, namespaces and groups, deleted
afterwards; see :mod:`bench.env`). The report names the backend.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    attribution,
    broker_fetch,
    burst_lag,
    cluster_scaling,
    e2e,
    faust_eos,
    friends_bought,
    limit,
    read_api,
    scaling,
    sse_fanout,
    throughput,
)
from bench.env import BenchConfigError, bench_env, describe_backend, existing_servers
from bench.registry import REGISTRY, Result, in_module_order
from bench.report import limit_lines
from bench.report import write as write_results

RESULTS = Path(__file__).resolve().parent / "results"

#: every scenario module (importing one registers its scenarios), in the order the runner runs,
#: ``--list`` lists and the report shows their scenarios
SCENARIO_MODULES = (
    limit,
    throughput,
    attribution,
    burst_lag,
    friends_bought,
    sse_fanout,
    read_api,
    e2e,
    broker_fetch,
    faust_eos,
    scaling,
    cluster_scaling,
)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def host_probe_ms(repeats: int = 5) -> float:
    """How fast this (shared, virtual) CPU computes right now: the best of ``repeats`` runs of a
    fixed single-core workload (a Python loop and a C hash), in ms; lower is faster. The load
    average says how busy the machine is; this catches a slower CPU as well (a neighbour on the
    same physical cores), which the load average inside the VM does not see. It fits in the
    caches, so it does not see slower memory: Redis on large sets (SINTERCARD over 1,000,000
    members) ran 440 to 670 us per call across runs whose probe stayed within 14-19 ms."""
    data = b"x" * 4_000_000
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i
        hashlib.sha256(data).digest()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: cores, memory, CPU model and how busy the machine was."""
    memory_gb = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "load_average_before": load_average(),
        "host_probe_ms_before": host_probe_ms(),
    }


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure over the runs; other values from the first run."""
    merged: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        numeric = all(
            isinstance(v, int | float) and not isinstance(v, bool) and v == v for v in values
        )
        if numeric and len(values) > 1:
            med = statistics.median(values)
            if all(isinstance(v, int) for v in values) and float(med).is_integer():
                med = int(med)
            elif isinstance(med, float):
                med = round(med, 3)
            merged[key] = med
        else:
            merged[key] = first
    return merged


def run_scenario(
    name: str, quick: bool, repeats: int | None, servers: tuple[str, str] | None = None
) -> dict[str, Any]:
    sc = REGISTRY[name]
    count = 1 if quick else (repeats or sc.repeats)
    started = time.monotonic()
    entry: dict[str, Any] = {
        "description": sc.description,
        "backend": describe_backend(servers),
        "load_average_before": load_average(),
        "host_probe_ms": host_probe_ms(),
    }
    try:
        runs: list[dict[str, Any]] = []
        result: Result | None = None
        for _ in range(count):
            with bench_env(servers) as env:
                result = sc.run(env, quick)
            runs.append(result.figures)
        assert result is not None
        figures = median_figures(runs)
        entry.update(
            summary=result.summarize(figures),
            figures=figures,
            targets=result.verdicts(figures),
            notes=result.notes,
            repeats=count,
        )
        if result.ingest:
            entry["ingest"] = result.ingest
        if result.limit:
            entry["limit_figure"] = result.limit
        if count > 1:
            entry["runs"] = runs
    except Exception as exc:  # one failing scenario must not hide the others' figures
        entry.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    entry["seconds"] = round(time.monotonic() - started, 1)
    # other work on the machine skews every figure: record how busy it was
    entry["load_average_after"] = load_average()
    return entry


def run(
    names: list[str],
    quick: bool,
    out: Path,
    repeats: int | None = None,
    servers: tuple[str, str] | None = None,
) -> dict:
    report: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "backend": describe_backend(servers),
        "machine": machine_facts(),
        "scenarios": {},
    }
    for name in names:
        entry = run_scenario(name, quick, repeats, servers)
        entry["run_at"] = report["started_at"]
        report["scenarios"][name] = entry
        line = entry.get("summary") or entry.get("error")
        verdicts = entry.get("targets", {})
        mark = (
            "ok" if verdicts and all(verdicts.values()) else ("n/a" if not verdicts else "MISSED")
        )
        times = f"median of {entry['repeats']} runs, " if entry.get("repeats", 1) > 1 else ""
        print(f"[bench] {name}: {line} [{mark}] ({times}{entry['seconds']}s)", flush=True)
    # every ingest figure as a fraction of the limit measured in this run
    for line in limit_lines(report):
        print(f"[bench-limit] {line}", flush=True)
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["machine"]["load_average_after"] = load_average()
    report["machine"]["host_probe_ms_after"] = host_probe_ms()
    for path in write_results(report, out, quick):
        print(f"[bench-plot] {path}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (harness smoke run)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per scenario (default: its own)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    scenarios = in_module_order(SCENARIO_MODULES)
    if args.list:
        for sc in scenarios:
            print(f"{sc.name}: {sc.description}")
        return 0
    known = [sc.name for sc in scenarios]
    names = [n.strip() for n in args.only.split(",") if n.strip()] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        servers = existing_servers()
    except BenchConfigError as exc:
        parser.error(str(exc))
    print(f"[bench-backend] {describe_backend(servers)}", flush=True)
    # a stop (SIGTERM) unwinds like Ctrl-C, so every environment deletes what it made
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(names, args.quick, args.out, args.repeats, servers)
    return 1 if any("error" in e for e in report["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
