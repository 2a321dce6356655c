"""``socialproof groups …``: consumer group lag and offset resets (:mod:`ops.topics`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from cli.common import AsJson, Yes, confirm, err, fail, load, out, parse_time
from ops import topics as ops
from socialproof.kafka import topic_name
from socialproof.settings import Settings

app = typer.Typer(help="Consumer groups: lag and offset resets.", no_args_is_help=True)


@app.command("lag")
def groups_lag(group: Annotated[str | None, typer.Argument(help="default: every group")] = None,
               as_json: AsJson = False) -> None:
    """Committed offset, end offset and lag per partition."""
    settings = load(Settings)
    try:
        names = [group] if group else ops.group_ids(settings)
        rows = [(g, r) for g in names for r in ops.group_lag(settings, g)]
    except (ops.OpsError, Exception) as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps([{"group": g, "topic": r.topic, "partition": r.partition,
                           "committed": r.committed, "end": r.end, "lag": r.lag}
                          for g, r in rows], indent=2))
        return
    table = Table(title="consumer group lag")
    for col in ("group", "topic", "partition", "committed", "end", "lag"):
        table.add_column(col)
    for g, r in rows:
        table.add_row(g, r.topic, str(r.partition), str(r.committed), str(r.end), str(r.lag))
    out.print(table)


@app.command("reset")
def groups_reset(
    group: str,
    to: Annotated[str, typer.Option("--to", help="earliest, latest or an ISO time")],
    topic: Annotated[list[str] | None, typer.Option("--topic", help="default: every event topic")] = None,
    yes: Yes = False,
) -> None:
    """Move a stopped group's committed offsets."""
    from contracts.topics import PROCESSOR_TOPICS

    settings = load(Settings)
    target: str | datetime = to if to in ("earliest", "latest") else parse_time(to, "--to")  # type: ignore[assignment]
    topics = topic or [topic_name(settings, t) for t in PROCESSOR_TOPICS]
    confirm(f"reset group {group} on {len(topics)} topic(s) to {to}?", yes)
    try:
        moved = ops.reset_group(settings, group, topics, target)
    except ops.OpsError as exc:
        raise fail(exc) from None
    err.print(f"moved {len(moved)} partition offset(s) of {group}")
