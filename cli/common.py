"""What every command group shares: the consoles, settings loading with clear errors, the
confirmation rule for writes, progress bars, and the time/offset arguments.

Read-only by default: whatever writes to a topic or moves a consumer group asks first
(``--yes`` skips the question; without a terminal the question is refused, never assumed).
Long work shows a progress bar with ETA on stderr, so ``topics dump`` can write to stdout.
``--json`` prints machine-readable output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()

Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
ProgressFn = Callable[[int, int], None]
S = TypeVar("S")


def fail(problem: object, code: int = 1) -> typer.Exit:
    """Print ``error: problem`` on stderr; raise the returned Exit."""
    err.print(f"[bold red]error:[/] {problem}")
    return typer.Exit(code)


def load(settings_cls: type[S]) -> S:
    """The settings from the environment, or exit 2 naming every invalid variable."""
    from pydantic import ValidationError

    try:
        return settings_cls()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(f"invalid settings: {problems}", code=2) from None


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        err.print(f"[red]refused:[/] {question} — needs confirmation; rerun with --yes")
        raise typer.Exit(1)
    if not typer.confirm(question, default=False, err=True):
        err.print("nothing done")
        raise typer.Exit(1)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[ProgressFn]:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total_now: int) -> None:
            bar.update(task, completed=done, total=total_now)

        yield update


def position(value: str | None, name: str) -> int | datetime | None:
    """An offset, ``earliest``/``latest``/``now`` or an ISO time; exit 2 naming ``name``."""
    from ops import topics as ops

    try:
        return ops.parse_position(value)
    except ops.OpsError as exc:
        err.print(f"[red]error:[/] {name}: {exc}")
        raise typer.Exit(2) from None


def parse_time(value: str | None, name: str) -> datetime | None:
    pos = position(value, name)
    if isinstance(pos, int):
        err.print(f"[red]error:[/] {name} takes a time (ISO-8601), not an offset")
        raise typer.Exit(2)
    return pos
