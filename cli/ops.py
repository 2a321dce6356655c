"""The engineer's topic commands: ``socialproof topics|dlq|groups …`` (see ``--help`` of each).

Read-only by default: whatever writes to a topic or moves a consumer group asks first
(``--yes`` skips the question; without a terminal the question is refused, never assumed).
Long work shows a progress bar with ETA on stderr, so ``topics dump`` can write to stdout.
``--json`` prints machine-readable output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ops import topics as ops
from socialproof.kafka import registry_topic, topic_name
from socialproof.settings import Settings

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()

dlq_app = typer.Typer(help="Dead letters: inspect them, replay them after a fix.",
                      no_args_is_help=True)
groups_app = typer.Typer(help="Consumer groups: lag and offset resets.", no_args_is_help=True)
replay_app = typer.Typer(help="Rebuild every counter from the event log, without downtime.",
                         no_args_is_help=True)

Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _settings() -> Settings:
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        err.print(f"[red]error:[/] invalid settings: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        err.print(f"[red]refused:[/] {question} — needs confirmation; rerun with --yes")
        raise typer.Exit(1)
    if not typer.confirm(question, default=False, err=True):
        err.print("nothing done")
        raise typer.Exit(1)


@contextmanager
def _progress(description: str, total: int | None = None):
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=err, transient=False, disable=not err.is_terminal) as progress:
        task = progress.add_task(description, total=total)

        def update(done: int, total_now: int) -> None:
            progress.update(task, completed=done, total=total_now)

        yield update


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/] {exc}")
    return typer.Exit(1)


def _position(value: str | None, name: str) -> int | datetime | None:
    try:
        return ops.parse_position(value)
    except ops.OpsError as exc:
        err.print(f"[red]error:[/] {name}: {exc}")
        raise typer.Exit(2) from None


def _time(value: str | None, name: str) -> datetime | None:
    pos = _position(value, name)
    if isinstance(pos, int):
        err.print(f"[red]error:[/] {name} takes a time (ISO-8601), not an offset")
        raise typer.Exit(2)
    return pos


# --- topics ----------------------------------------------------------------------------------


def topics_list(as_json: AsJson = False,
                internal: Annotated[bool, typer.Option(help="include __internal topics")] = False
                ) -> None:
    """Topics with partitions, start/end offsets, record counts, retention and cleanup policy."""
    try:
        infos = ops.list_topics(_settings(), include_internal=internal)
    except (ops.OpsError, Exception) as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps([i.as_json() for i in infos], indent=2))
        return
    table = Table(title="topics")
    for col in ("topic", "partitions", "start", "end", "records", "cleanup", "retention.ms"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name + ("" if i.in_registry else " *"), str(i.partitions),
                      str(sum(i.start_offsets.values())), str(sum(i.end_offsets.values())),
                      str(i.records), i.cleanup_policy, i.retention_ms)
    out.print(table)
    out.print("* not in the contracts registry")


def _describe(rec: ops.Record) -> dict[str, Any]:
    from contracts import codec

    entry: dict[str, Any] = {"partition": rec.partition, "offset": rec.offset,
                             "timestamp_ms": rec.timestamp_ms,
                             "key": rec.key.decode(errors="replace") if rec.key else None}
    if rec.value is None:
        entry["tombstone"] = True
        return entry
    try:
        event = codec.decode(rec.value)
        entry["event"] = json.loads(codec.encode(event))
    except codec.EventDecodeError as exc:
        entry["invalid"] = {"reason": exc.reason, "detail": exc.detail}
    return entry


def topics_tail(
    topic: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new records")] = False,
    key: Annotated[str | None, typer.Option(help="only records with this key")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="only this event_type")] = None,
    last: Annotated[int, typer.Option(help="records per partition to start from (not --from)")] = 10,
    start: Annotated[str | None, typer.Option("--from", help="offset or ISO time")] = None,
) -> None:
    """Decoded, validated events of a topic (one JSON object per line)."""
    settings = _settings()
    position = _position(start, "--from")
    try:
        if position is None:
            ends = ops.true_end_offsets(settings, topic)
            position = max(0, min(ends.values(), default=0) - last)
        for rec in ops.read_topic(settings, topic, start=position, follow=follow):
            if key is not None and (rec.key or b"").decode(errors="replace") != key:
                continue
            if event_type is not None and ops.event_type_of(rec.value) != event_type:
                continue
            print(json.dumps(_describe(rec), default=str), flush=True)
    except KeyboardInterrupt:
        return
    except ops.OpsError as exc:
        raise _fail(exc) from None


def topics_dump(
    topic: str,
    start: Annotated[str | None, typer.Option("--from", help="offset or ISO time")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="offset or ISO time (inclusive)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file (default stdout)")] = None,
) -> None:
    """Write records as JSON lines (keys, headers, timestamps kept) to stdout or --output."""
    settings = _settings()
    first, last = _position(start, "--from"), _position(stop, "--to")
    sink = output.open("wb") if output else sys.stdout.buffer
    written = 0
    try:
        with _progress(f"dump {topic}") as update:
            for rec in ops.read_topic(settings, topic, start=first, stop=last, on_progress=update):
                sink.write(ops.record_to_line(rec))
                written += 1
    except KeyboardInterrupt:
        err.print(f"interrupted: {written} complete line(s) written")
        raise typer.Exit(130) from None
    except ops.OpsError as exc:
        raise _fail(exc) from None
    finally:
        sink.flush()
        if output:
            sink.close()
    err.print(f"dumped {written} record(s) from {topic}")


Create = Annotated[bool, typer.Option(
    "--create", help="create the target topic if it does not exist (replication factor: the "
    "broker's default)")]
Partitions = Annotated[int | None, typer.Option(
    "--partitions", min=1, help="with --create: partitions of the new topic")]
TopicConfig = Annotated[list[str] | None, typer.Option(
    "--config", help="with --create: a config of the new topic, key=value (repeatable)")]


def _config_pairs(values: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            err.print("[red]error:[/] --config takes key=value (e.g. retention.ms=604800000), "
                      f"not {escape(repr(item))}")
            raise typer.Exit(2)
        pairs[key.strip()] = value
    return pairs


def _creation_options(create: bool, partitions: int | None,
                      config: list[str] | None) -> dict[str, str]:
    """The --config pairs, after checking that --partitions/--config come with --create."""
    pairs = _config_pairs(config)
    if not create and (partitions is not None or pairs):
        err.print("[red]error:[/] --partitions and --config describe a topic to create: they "
                  "only apply with --create")
        raise typer.Exit(2)
    return pairs


def _target_to_create(settings: Settings, target: str, create: bool, partitions: int | None,
                      config: dict[str, str], base: Callable[[], ops.TopicSpec | None],
                      no_base: str) -> ops.TopicSpec | None:
    """What to create ``target`` with, or None when it exists. ``base`` gives the partitions and
    configs to start from (--partitions/--config override them); when it gives None,
    --partitions is required and ``no_base`` says why."""
    try:
        existing = ops.topic_partitions(settings, target)
        if existing is not None:
            if create and (partitions is not None or config):
                err.print(f"{target} exists ({existing} partition(s)): nothing created, "
                          "--partitions/--config not applied", markup=False)
            return None
        if not create:
            raise ops.missing_target(target)
        spec = base()
    except (ops.OpsError, KafkaException) as exc:
        raise _fail(exc) from None
    if spec is None:
        if partitions is None:
            err.print(f"[red]error:[/] --partitions is required to create {target!r}: {no_base}")
            raise typer.Exit(2)
        spec = ops.TopicSpec(partitions)
    return spec.with_overrides(partitions, config)


def _create(settings: Settings, target: str, spec: ops.TopicSpec | None) -> None:
    if spec is None:
        return
    try:
        created = ops.create_topic(settings, target, spec)
    except (ops.OpsError, KafkaException) as exc:
        raise _fail(exc) from None
    err.print(created.describe(), markup=False)


def topics_load(
    file: Annotated[Path, typer.Argument(help="a JSON-lines dump", exists=True, dir_okay=False)],
    to: Annotated[str, typer.Option("--to", help="the topic to write to")],
    skip_invalid: Annotated[bool, typer.Option(help="load the valid lines, skip the rest")] = False,
    create: Create = False,
    partitions: Partitions = None,
    config: TopicConfig = None,
    yes: Yes = False,
) -> None:
    """Produce a dump file's records into a topic, validating every line against the contracts.

    With --create a missing topic is created first: a registry topic with the registry's
    partitions and configs, any other with --partitions (required) and --config."""
    settings = _settings()
    overrides = _creation_options(create, partitions, config)
    registry = registry_topic(settings, to)
    with file.open("rb") as handle:
        records, invalid = ops.read_dump(iter(handle), to, registry)
    for bad in invalid[:50]:
        err.print(f"{file}:{bad.line_no}: {bad.reason}")
    if len(invalid) > 50:
        err.print(f"… and {len(invalid) - 50} more invalid line(s)")
    if invalid and not skip_invalid:
        err.print(f"[red]{len(invalid)} invalid line(s); nothing loaded[/] (--skip-invalid to "
                  "load the valid ones)")
        raise typer.Exit(1)
    spec = _target_to_create(
        settings, to, create, partitions, overrides,
        lambda: ops.TopicSpec(registry.partitions, registry.config) if registry else None,
        "it is not a registry topic, so there are no partitions to take from the registry")
    _confirm(f"create topic {to} ({spec.describe()}) and write {len(records)} record(s) to it?"
             if spec else f"write {len(records)} record(s) to {to}?", yes)
    _create(settings, to, spec)
    try:
        with _progress(f"load {to}", len(records)) as update:
            delivered = ops.load(settings, records, to, on_progress=update)
    except KeyboardInterrupt:
        err.print("interrupted: records already acknowledged stay in the topic")
        raise typer.Exit(130) from None
    except ops.OpsError as exc:
        raise _fail(exc) from None
    err.print(f"loaded {delivered} record(s) into {to}; skipped {len(invalid)} invalid line(s)")


def topics_copy(
    source: str,
    target: str,
    from_time: Annotated[str | None, typer.Option("--from-time", help="ISO time")] = None,
    to_time: Annotated[str | None, typer.Option("--to-time", help="ISO time")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="only this event_type")] = None,
    create: Create = False,
    partitions: Partitions = None,
    config: TopicConfig = None,
    yes: Yes = False,
) -> None:
    """Copy records between topics (keys, headers, timestamps kept), optionally filtered.

    With --create a missing target is created first with the source's partition count and its
    non-default configs; --partitions and --config override them."""
    settings = _settings()
    start, stop = _time(from_time, "--from-time"), _time(to_time, "--to-time")
    overrides = _creation_options(create, partitions, config)
    spec = _target_to_create(settings, target, create, partitions, overrides,
                             lambda: ops.spec_of(settings, source), "")
    _confirm(f"create topic {target} ({spec.describe()}) and copy {source} -> {target}?"
             if spec else f"copy {source} -> {target}?", yes)
    _create(settings, target, spec)
    try:
        with _progress(f"copy {source}") as update:
            read, written = ops.copy(settings, source, target, start=start, stop=stop,
                                     event_type=event_type, on_progress=update)
    except KeyboardInterrupt:
        err.print("interrupted: records already acknowledged stay in the target")
        raise typer.Exit(130) from None
    except ops.OpsError as exc:
        raise _fail(exc) from None
    err.print(f"read {read}, wrote {written} record(s) to {target}")


def register_topic_commands(topics_app: typer.Typer) -> None:
    topics_app.command("list")(topics_list)
    topics_app.command("tail")(topics_tail)
    topics_app.command("dump")(topics_dump)
    topics_app.command("load")(topics_load)
    topics_app.command("copy")(topics_copy)


# --- dead letters -------------------------------------------------------------------------------


def _letters(reason: str | None) -> list[ops.DeadLetterRecord]:
    try:
        return ops.dead_letters(_settings(), reason)
    except ops.OpsError as exc:
        raise _fail(exc) from None


@dlq_app.command("list")
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


@dlq_app.command("show")
def dlq_show(offset: int) -> None:
    """One dead letter in full, with the original record (text when it is text)."""
    for item in _letters(None):
        if item.offset == offset:
            data = item.letter.model_dump(mode="json")
            original = item.letter.original_value()
            data["original_text"] = original.decode("utf-8", "replace")[:10_000] if original else None
            print(json.dumps(data, indent=2))
            return
    raise _fail(ops.OpsError(f"no dead letter at offset {offset}"))


@dlq_app.command("replay")
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
    _confirm(f"replay {len(chosen)} dead letter(s) to their source topics?", yes)
    try:
        count = ops.replay_dead_letters(_settings(), chosen)
    except ops.OpsError as exc:
        raise _fail(exc) from None
    err.print(f"replayed {count} record(s)")


# --- consumer groups ----------------------------------------------------------------------------


@groups_app.command("lag")
def groups_lag(group: Annotated[str | None, typer.Argument(help="default: every group")] = None,
               as_json: AsJson = False) -> None:
    """Committed offset, end offset and lag per partition."""
    settings = _settings()
    try:
        names = [group] if group else ops.group_ids(settings)
        rows = [(g, r) for g in names for r in ops.group_lag(settings, g)]
    except (ops.OpsError, Exception) as exc:
        raise _fail(exc) from None
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


@groups_app.command("reset")
def groups_reset(
    group: str,
    to: Annotated[str, typer.Option("--to", help="earliest, latest or an ISO time")],
    topic: Annotated[list[str] | None, typer.Option("--topic", help="default: every event topic")] = None,
    yes: Yes = False,
) -> None:
    """Move a stopped group's committed offsets."""
    from contracts.topics import EVENT_TOPICS

    settings = _settings()
    target: str | datetime = to if to in ("earliest", "latest") else _time(to, "--to")  # type: ignore[assignment]
    topics = topic or [topic_name(settings, t) for t in EVENT_TOPICS]
    _confirm(f"reset group {group} on {len(topics)} topic(s) to {to}?", yes)
    try:
        moved = ops.reset_group(settings, group, topics, target)
    except ops.OpsError as exc:
        raise _fail(exc) from None
    err.print(f"moved {len(moved)} partition offset(s) of {group}")


# --- replay ------------------------------------------------------------------------------------


def _worker_settings():
    """The stream worker's settings: a rebuild replays into Redis as the worker does."""
    from pydantic import ValidationError

    from services.counters.settings import CountersSettings

    try:
        return CountersSettings()
    except ValidationError as exc:
        err.print(f"[red]error:[/] invalid settings: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None


def _interrupt_on_sigterm() -> None:
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@replay_app.command("rebuild")
def replay_rebuild(
    start: Annotated[str, typer.Option("--from", help="earliest or an ISO time")] = "earliest",
    switch: Annotated[bool, typer.Option(help="move readers to the rebuilt namespace")] = False,
    dry_run: Annotated[bool, typer.Option(help="only say what would be done")] = False,
    grace: Annotated[float, typer.Option(help="seconds before the old namespace is deleted")] = 60,
    handover: Annotated[float, typer.Option(help="seconds for live batches in flight")] = 5,
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    """Recompute every counter into a new namespace while live processing continues."""
    from ops import rebuild

    settings = _worker_settings()
    begin = _time(None if start == "earliest" else start, "--from")
    try:
        the_plan = rebuild.plan(settings, settings.worker_consumer_group, begin)
    except (rebuild.RebuildError, ops.OpsError) as exc:
        raise _fail(exc) from None
    for line in the_plan.describe():
        err.print(line)
    if switch:
        err.print(f"then switch readers to {the_plan.new} and delete {the_plan.old} after "
                  f"{grace:.0f}s")
    if dry_run:
        err.print("dry run: nothing done")
        return
    _confirm(f"rebuild into {the_plan.new}{' and switch' if switch else ''}?", yes)
    _interrupt_on_sigterm()  # a Kubernetes Job being stopped must undo like Ctrl-C does
    with _progress("replay", the_plan.events) as update:
        job = rebuild.Rebuild(settings, the_plan, report=lambda m: err.print(m), progress=update,
                              handover_s=handover, grace_s=grace)
        try:
            result = job.run(switch=switch)
        except KeyboardInterrupt:
            err.print("interrupted: undone, nothing switched")
            raise typer.Exit(130) from None
        except (rebuild.RebuildError, ops.OpsError, Exception) as exc:
            raise _fail(exc) from None
    summary = {"namespace": the_plan.new, "previous": the_plan.old, "switched": result.switched,
               "replayed": result.replayed, "seconds": round(result.seconds, 2),
               "events_per_second": round(result.rate, 1),
               "old_keys_deleted": result.old_keys_deleted}
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"rebuilt {result.replayed} record(s) in {result.seconds:.1f}s "
                  f"({result.rate:,.0f} events/s)")


@replay_app.command("status")
def replay_status(as_json: AsJson = False) -> None:
    """The active namespace, a hand-over in progress, and every namespace with its key count."""
    from ops import rebuild

    state = rebuild.status(_worker_settings())
    if as_json:
        print(json.dumps(state, indent=2))
        return
    for key, value in state.items():
        out.print(f"{key}: {value}")


@replay_app.command("drop")
def replay_drop(namespace: str, yes: Yes = False) -> None:
    """Delete a namespace that is not active (a finished or abandoned rebuild's leftovers)."""
    from ops import rebuild

    _confirm(f"delete every key of namespace {namespace!r}?", yes)
    try:
        deleted = rebuild.drop(_worker_settings(), namespace)
    except rebuild.RebuildError as exc:
        raise _fail(exc) from None
    err.print(f"deleted {deleted} key(s)")


def register(app: typer.Typer, topics_app: typer.Typer) -> None:
    register_topic_commands(topics_app)
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(groups_app, name="groups")
    app.add_typer(replay_app, name="replay")


ProgressFn = Callable[[int, int], None]
