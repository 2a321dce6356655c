"""``socialproof replay …``: rebuild every counter from the event log into a new namespace while
the live workers keep serving, then switch readers (:mod:`ops.rebuild`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.common import AsJson, Yes, confirm, err, fail, load, out, parse_time, progress
from ops import topics as ops
from services.counters.settings import CountersSettings

app = typer.Typer(help="Rebuild every counter from the event log, without downtime.",
                  no_args_is_help=True)


def _worker_settings() -> CountersSettings:
    """The stream worker's settings: a rebuild replays into Redis as the worker does."""
    return load(CountersSettings)


def _interrupt_on_sigterm() -> None:
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@app.command("rebuild")
def replay_rebuild(
    start: Annotated[str, typer.Option("--from", help="earliest or an ISO time")] = "earliest",
    switch: Annotated[bool, typer.Option(help="move readers to the rebuilt namespace")] = False,
    dry_run: Annotated[bool, typer.Option(help="only say what would be done")] = False,
    grace: Annotated[float, typer.Option(help="seconds before the old namespace is deleted")] = 60,
    handover: Annotated[float, typer.Option(help="seconds for live batches in flight")] = 5,
    shards: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="product shards of the new namespace (contracts/layout.py); default 1 on one "
            "Redis, 12 on a Redis Cluster. A rebuild is how a namespace changes its shard count",
        ),
    ] = None,
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    """Recompute every counter into a new namespace while live processing continues."""
    from ops import rebuild

    settings = _worker_settings()
    begin = parse_time(None if start == "earliest" else start, "--from")
    try:
        the_plan = rebuild.plan(settings, settings.worker_consumer_group, begin, shards=shards)
    except (rebuild.RebuildError, ops.OpsError) as exc:
        raise fail(exc) from None
    for line in the_plan.describe():
        err.print(line)
    if switch:
        err.print(f"then switch readers to {the_plan.new} and delete {the_plan.old} after "
                  f"{grace:.0f}s")
    if dry_run:
        err.print("dry run: nothing done")
        return
    confirm(f"rebuild into {the_plan.new}{' and switch' if switch else ''}?", yes)
    _interrupt_on_sigterm()  # a Kubernetes Job being stopped must undo like Ctrl-C does
    with progress("replay", the_plan.events) as update:
        job = rebuild.Rebuild(settings, the_plan, report=lambda m: err.print(m), progress=update,
                              handover_s=handover, grace_s=grace)
        try:
            result = job.run(switch=switch)
        except KeyboardInterrupt:
            err.print("interrupted: undone, nothing switched")
            raise typer.Exit(130) from None
        except (rebuild.RebuildError, ops.OpsError, Exception) as exc:
            raise fail(exc) from None
    summary = {"namespace": the_plan.new, "previous": the_plan.old, "shards": the_plan.shards,
               "switched": result.switched,
               "replayed": result.replayed, "seconds": round(result.seconds, 2),
               "events_per_second": round(result.rate, 1),
               "old_keys_deleted": result.old_keys_deleted}
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"rebuilt {result.replayed} record(s) in {result.seconds:.1f}s "
                  f"({result.rate:,.0f} events/s)")


@app.command("status")
def replay_status(as_json: AsJson = False) -> None:
    """The active namespace, a hand-over in progress, and every namespace with its key count."""
    from ops import rebuild

    state = rebuild.status(_worker_settings())
    if as_json:
        print(json.dumps(state, indent=2))
        return
    for key, value in state.items():
        out.print(f"{key}: {value}")


@app.command("drop")
def replay_drop(namespace: str, yes: Yes = False) -> None:
    """Delete a namespace that is not active (a finished or abandoned rebuild's leftovers)."""
    from ops import rebuild

    confirm(f"delete every key of namespace {namespace!r}?", yes)
    try:
        deleted = rebuild.drop(_worker_settings(), namespace)
    except rebuild.RebuildError as exc:
        raise fail(exc) from None
    err.print(f"deleted {deleted} key(s)")
