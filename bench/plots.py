"""PNG plots of the benchmark results (matplotlib, ``pip install -e '.[bench]'``).

``write_plots(report, out, suffix)`` draws one figure per scenario it knows from the merged
results (``latest.json``) and returns {scenario: path}; the markdown report embeds them. Every
figure carries the machine facts (cores, memory, load average) and how many runs its medians
come from, so a PNG read on its own is not misleading.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

Figure = Any


def _footer(fig: Figure, report: dict, entry: dict, extra: str = "") -> None:
    m = report.get("machine", {})
    runs = entry.get("repeats", 1)
    parts = [
        f"shared {m.get('cpus')}-core machine, {m.get('memory_gb')} GB RAM",
        f"load avg {entry.get('load_average_before', '?')} → "
        f"{entry.get('load_average_after', '?')}",
        f"run at {str(entry.get('run_at', '?'))[:19]}Z",
    ]
    if runs > 1:
        parts.append(f"median of {runs} runs")
    if extra:
        parts.append(extra)
    if report.get("quick"):
        parts.append("QUICK smoke run (tiny sizes)")
    text = "; ".join(parts)
    fig.text(0.01, 0.01, text, fontsize=7, color="#555555", wrap=True)


def _label_bars(ax, bars, fmt: str = "{:g}") -> None:
    for bar in bars:
        height = bar.get_height()
        ax.annotate(
            fmt.format(height),
            (bar.get_x() + bar.get_width() / 2, height),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )


def _throughput(report: dict, entry: dict) -> Figure:
    f = entry["figures"]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    bars_of = [
        ("limit", "limit_events_per_s", "limit_events_per_s_each", "#444444"),
        ("our worker", "batched", "batched_window_events_per_s", "#2b7bba"),
        ("Quix Streams peer", "peer", None, "#f28e2b"),
        ("per-event baseline", "baseline", "baseline_window_events_per_s", "#bbbbbb"),
    ]
    shown = []
    for label, key, each, color in bars_of:
        rate = f.get(key if key.endswith("_per_s") else f"{key}_events_per_s")
        if rate is None:
            continue
        pct = f.get(f"{key}_pct_of_limit")
        shown.append(
            (
                label + (f"\n{pct:g} % of the limit" if pct is not None else ""),
                rate,
                f.get(each) if each else None,
                color,
            )
        )
    bars = ax.bar([s[0] for s in shown], [s[1] for s in shown], color=[s[3] for s in shown])
    _label_bars(ax, bars, "{:,.0f} ev/s")
    for i, (_, _, points, _) in enumerate(shown):
        points = points or []
        ax.scatter([i] * len(points), points, color="black", s=12, zorder=3, label=None)
    ax.axhline(20_000, color="#d62728", linestyle="--", linewidth=1, label="target 20,000 ev/s")
    ax.set_ylabel("events/s (bar: whole backlog; dots: each window or pass)")
    versus = [f"{f['ratio']}x the per-event baseline"] if "ratio" in f else []
    if "vs_peer" in f:
        versus.insert(0, f"{f['vs_peer']}x the peer")
    ax.set_title(f"Ingest on one backlog: our worker = {', '.join(versus)}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    fig.subplots_adjust(bottom=0.2)
    peer = "" if "peer_events_per_s" in f else "; peer unavailable"
    _footer(fig, report, entry, f"{f.get('windows', 1)} windows per worker{peer}")
    return fig


def _burst(report: dict, entry: dict) -> Figure:
    f = entry["figures"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = ["#2b7bba", "#e6550d", "#31a354", "#756bb1"]
    acked = f.get("produce_seconds_each") or []
    for i, timeline in enumerate(f.get("timelines") or []):
        if not timeline:
            continue
        xs, ys = zip(*timeline, strict=True)
        color = colors[i % len(colors)]
        ax.plot(xs, ys, color=color, linewidth=1.4, label=f"burst {i + 1}")
        if i < len(acked) and acked[i] is not None:
            ax.axvline(acked[i], color=color, linestyle=":", linewidth=1)
    ax.axhline(1.0, color="#d62728", linestyle="--", linewidth=1, label="1 s")
    ax.set_xlabel("seconds since the burst started (dotted: its last record acknowledged)")
    ax.set_ylabel("lag, seconds")
    ax.set_title(
        f"Lag around a {f['burst_events']:,}-event burst on "
        f"{f.get('background_events_per_s', 0):,} ev/s (back under 1 s "
        f"{f.get('lag_back_under_1s_s')} s after it, median)"
    )
    ax.legend(fontsize=8)
    fig.subplots_adjust(bottom=0.16)
    _footer(fig, report, entry)
    return fig


def _e2e(report: dict, entry: dict) -> Figure:
    f = entry["figures"]
    rates = f["rates"]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    width = 0.27
    for i, (label, color) in enumerate(
        (("p50", "#9ecae1"), ("p95", "#4292c6"), ("p99", "#08519c"))
    ):
        values = [f[f"r{r}_{label}_ms"] for r in rates]
        bars = ax.bar(
            [x + (i - 1) * width for x in range(len(rates))],
            values,
            width,
            label=label,
            color=color,
        )
        _label_bars(ax, bars, "{:g}")
        for x, rate in enumerate(rates):  # each run's percentile, so the spread is visible
            each = f.get(f"r{rate}_{label}_ms_each") or []
            ax.scatter([x + (i - 1) * width] * len(each), each, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(rates)), [f"{r:,} events/s" for r in rates])
    ax.set_ylabel("ms, order 201 → SSE client has the count\n(bars: median; dots: each run)")
    ax.set_title("End-to-end latency: order accepted → update at an SSE client")
    ax.legend(fontsize=8)
    fig.subplots_adjust(bottom=0.17)
    _footer(
        fig,
        report,
        entry,
        f"median of {f['repeats']} runs x {f['seconds_per_run']:g} s per rate; "
        f"{f['timed_orders_per_s']} timed orders/s in the mix",
    )
    return fig


def _scaling(report: dict, entry: dict) -> Figure:
    f = entry["figures"]
    big_b, big_f = f["buyers_for_friends_axis"], f["friends_for_buyers_axis"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    series = (
        (
            left,
            f["friends_axis"],
            lambda x: f"f{x}_b{big_b}",
            "friends per viewer",
            f"buyers = {big_b:,}",
        ),
        (
            right,
            f["buyers_axis"],
            lambda x: f"f{big_f}_b{x}",
            "buyers per product",
            f"friends = {big_f:,}",
        ),
    )
    for ax, axis, tag, xlabel, fixed in series:
        ax.plot(axis, [f[f"{tag(x)}_p50_ms"] for x in axis], "o-", label="read p50 (client)")
        ax.plot(axis, [f[f"{tag(x)}_p99_ms"] for x in axis], "s-", label="read p99 (client)")
        ax.plot(
            axis,
            [f[f"{tag(x)}_sintercard_us"] / 1000 for x in axis],
            "^--",
            label="SINTERCARD mean inside Redis",
        )
        ax.axhline(2.0, color="#d62728", linestyle=":", linewidth=1, label="target p99 2 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"friends_bought vs {xlabel} ({fixed})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    left.set_ylabel("ms (log scale)")
    left.legend(fontsize=8)
    fig.subplots_adjust(bottom=0.2)
    _footer(fig, report, entry, f"{f['calls_per_run']} reads per point per run")
    return fig


def _fanout(report: dict, entries: dict[str, dict]) -> Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    names = list(entries)
    labels = [
        f"{e['figures']['connections']:,} conns,\n{e['figures']['watchers_per_product']} per product"
        for e in entries.values()
    ]
    x = range(len(names))
    bars = left.bar(
        [i - 0.2 for i in x],
        [e["figures"]["rss_connected_mb"] for e in entries.values()],
        0.4,
        label="connected",
        color="#9ecae1",
    )
    _label_bars(left, bars, "{:g}")
    bars = left.bar(
        [i + 0.2 for i in x],
        [e["figures"]["rss_peak_mb"] for e in entries.values()],
        0.4,
        label="peak under load",
        color="#2b7bba",
    )
    _label_bars(left, bars, "{:g}")
    left.axhline(500, color="#d62728", linestyle="--", linewidth=1, label="target 500 MB")
    left.set_xticks(list(x), labels)
    left.set_ylabel("notifier RSS, MB")
    left.set_title("Notifier memory", fontsize=10)
    left.legend(fontsize=8)
    for i, key in enumerate(("p50_ms", "p99_ms")):
        bars = right.bar(
            [j + (i - 0.5) * 0.4 for j in x],
            [e["figures"][key] for e in entries.values()],
            0.4,
            label=key.replace("_ms", ""),
            color=("#9ecae1", "#08519c")[i],
        )
        _label_bars(right, bars, "{:g}")
    right.axhline(100, color="#d62728", linestyle="--", linewidth=1, label="target p99 100 ms")
    right.set_xticks(list(x), labels)
    right.set_ylabel("ms, counter change → client")
    rate = next(iter(entries.values()))["figures"]["changes_per_s"]
    right.set_title(f"Delivery latency at {rate:,.0f} changes/s", fontsize=10)
    right.legend(fontsize=8)
    fig.subplots_adjust(bottom=0.2)
    _footer(fig, report, next(iter(entries.values())))
    return fig


def _read_api(report: dict, entry: dict) -> Figure:
    f = entry["figures"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = ["p50", "p99"]
    for i, (prefix, name, color) in enumerate(
        (
            ("", f"concurrency {f['concurrency']}", "#2b7bba"),
            ("single_client_", "one client", "#9ecae1"),
        )
    ):
        bars = ax.bar(
            [j + (i - 0.5) * 0.4 for j in range(2)],
            [f[f"{prefix}{label}_ms"] for label in labels],
            0.4,
            label=name,
            color=color,
        )
        _label_bars(ax, bars, "{:g}")
    ax.axhline(5, color="#d62728", linestyle="--", linewidth=1, label="target p99 5 ms")
    ax.set_xticks(range(2), labels)
    ax.set_ylabel("ms (client-observed)")
    ax.set_title(
        f"Read API with a viewer token: {f['requests_per_s']:,.0f} req/s at concurrency "
        f"{f['concurrency']}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    fig.subplots_adjust(bottom=0.16)
    _footer(fig, report, entry)
    return fig


SINGLE: dict[str, Callable[[dict, dict], Figure]] = {
    "throughput": _throughput,
    "burst_lag": _burst,
    "e2e_latency": _e2e,
    "scaling": _scaling,
    "read_api": _read_api,
}


def write_plots(report: dict, out: Path, suffix: str = "") -> dict[str, Path]:
    """One PNG per known scenario with figures; returns {scenario: path}."""
    scenarios = {n: e for n, e in report.get("scenarios", {}).items() if e.get("figures")}
    written: dict[str, Path] = {}

    def save(fig: Figure, stem: str) -> Path:
        path = out / f"{stem}{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    for name, draw in SINGLE.items():
        if name in scenarios:
            try:
                written[name] = save(draw(report, scenarios[name]), name)
            except KeyError:  # results from an older harness lack a figure: no plot for it
                continue
    fanout = {n: scenarios[n] for n in ("sse_fanout", "sse_fanout_x5") if n in scenarios}
    if fanout:
        path = save(_fanout(report, fanout), "sse_fanout")
        for name in fanout:
            written[name] = path
    return written
