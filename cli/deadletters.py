"""``socialproof dlq …``: list, show and replay dead letters (:mod:`ops.topics`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import AsJson, Yes, confirm, err, fail, load, out
from ops import topics as ops
from socialproof.settings import Settings

app = typer.Typer(help="Dead letters: inspect them, replay them after a fix.", no_args_is_help=True)


def _letters(reason: str | None) -> list[ops.DeadLetterRecord]:
    try:
        return ops.dead_letters(load(Settings), reason)
    except ops.OpsError as exc:
        raise fail(exc) from None


@app.command("list")
def dlq_list(reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
             as_json: AsJson = False) -> None:
    """Dead letters: where each came from and why."""
    items = [d.summary() for d in _letters(reason)]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    table = Table(title=f"{len(items)} dead letter(s)")
    for col in ("offset", "source", "reason", "error", "failed_at"):
        table.add_column(col)
    for i in items:
        table.add_row(str(i["offset"]), i["source"], i["reason"], i["error"][:80], i["failed_at"])
    out.print(table)


@app.command("show")
def dlq_show(offset: int) -> None:
    """One dead letter in full, with the original record (text when it is text)."""
    for item in _letters(None):
        if item.offset == offset:
            data = item.letter.model_dump(mode="json")
            original = item.letter.original_value()
            data["original_text"] = original.decode("utf-8", "replace")[:10_000] if original else None
            print(json.dumps(data, indent=2))
            return
    raise fail(ops.OpsError(f"no dead letter at offset {offset}"))


@app.command("replay")
def dlq_replay(
    offsets: Annotated[list[int] | None, typer.Argument(help="dead-letter offsets (default all)")] = None,
    reason: Annotated[str | None, typer.Option(help="only dead letters with this reason")] = None,
    yes: Yes = False,
) -> None:
    """Send dead letters' original records back to their source topics (after a fix)."""
    chosen = [d for d in _letters(reason) if not offsets or d.offset in offsets]
    if not chosen:
        err.print("no matching dead letters")
        raise typer.Exit(1)
    confirm(f"replay {len(chosen)} dead letter(s) to their source topics?", yes)
    try:
        count = ops.replay_dead_letters(load(Settings), chosen)
    except ops.OpsError as exc:
        raise fail(exc) from None
    err.print(f"replayed {count} record(s)")
