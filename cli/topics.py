"""``socialproof topics …``: create the registry's topics; list, tail, dump, load and copy records
(:mod:`ops.topics` does the work)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka import KafkaException
from rich.markup import escape
from rich.table import Table

from cli.common import AsJson, Yes, confirm, err, fail, load, out, parse_time, position, progress
from ops import topics as ops
from socialproof.kafka import registry_topic
from socialproof.settings import Settings

app = typer.Typer(help="Kafka topics: create, list, tail, dump, load, copy.", no_args_is_help=True)


@app.command("create")
def topics_create() -> None:
    """Create every registry topic that does not exist yet on KAFKA_BOOTSTRAP_SERVERS."""
    from socialproof.kafka import ensure_topics

    created = ensure_topics(load(Settings))
    out.print(f"created: {', '.join(created) if created else 'nothing (all exist)'}")




@app.command("list")
def topics_list(as_json: AsJson = False,
                internal: Annotated[bool, typer.Option(help="include __internal topics")] = False
                ) -> None:
    """Topics with partitions, start/end offsets, record counts, retention and cleanup policy."""
    try:
        infos = ops.list_topics(load(Settings), include_internal=internal)
    except (ops.OpsError, Exception) as exc:
        raise fail(exc) from None
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


@app.command("tail")
def topics_tail(
    topic: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new records")] = False,
    key: Annotated[str | None, typer.Option(help="only records with this key")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="only this event_type")] = None,
    last: Annotated[int, typer.Option(help="records per partition to start from (not --from)")] = 10,
    start: Annotated[str | None, typer.Option("--from", help="offset or ISO time")] = None,
) -> None:
    """Decoded, validated events of a topic (one JSON object per line)."""
    settings = load(Settings)
    begin = position(start, "--from")
    try:
        if begin is None:
            ends = ops.true_end_offsets(settings, topic)
            begin = max(0, min(ends.values(), default=0) - last)
        for rec in ops.read_topic(settings, topic, start=begin, follow=follow):
            if key is not None and (rec.key or b"").decode(errors="replace") != key:
                continue
            if event_type is not None and ops.event_type_of(rec.value) != event_type:
                continue
            print(json.dumps(_describe(rec), default=str), flush=True)
    except KeyboardInterrupt:
        return
    except ops.OpsError as exc:
        raise fail(exc) from None


@app.command("dump")
def topics_dump(
    topic: str,
    start: Annotated[str | None, typer.Option("--from", help="offset or ISO time")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="offset or ISO time (inclusive)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file (default stdout)")] = None,
) -> None:
    """Write records as JSON lines (keys, headers, timestamps kept) to stdout or --output."""
    settings = load(Settings)
    first, last = position(start, "--from"), position(stop, "--to")
    sink = output.open("wb") if output else sys.stdout.buffer
    written = 0
    try:
        with progress(f"dump {topic}") as update:
            for rec in ops.read_topic(settings, topic, start=first, stop=last, on_progress=update):
                sink.write(ops.record_to_line(rec))
                written += 1
    except KeyboardInterrupt:
        err.print(f"interrupted: {written} complete line(s) written")
        raise typer.Exit(130) from None
    except ops.OpsError as exc:
        raise fail(exc) from None
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
        raise fail(exc) from None
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
        raise fail(exc) from None
    err.print(created.describe(), markup=False)


@app.command("load")
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
    settings = load(Settings)
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
    confirm(f"create topic {to} ({spec.describe()}) and write {len(records)} record(s) to it?"
             if spec else f"write {len(records)} record(s) to {to}?", yes)
    _create(settings, to, spec)
    try:
        with progress(f"load {to}", len(records)) as update:
            delivered = ops.load(settings, records, to, on_progress=update)
    except KeyboardInterrupt:
        err.print("interrupted: records already acknowledged stay in the topic")
        raise typer.Exit(130) from None
    except ops.OpsError as exc:
        raise fail(exc) from None
    err.print(f"loaded {delivered} record(s) into {to}; skipped {len(invalid)} invalid line(s)")


@app.command("copy")
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
    settings = load(Settings)
    start, stop = parse_time(from_time, "--from-time"), parse_time(to_time, "--to-time")
    overrides = _creation_options(create, partitions, config)
    spec = _target_to_create(settings, target, create, partitions, overrides,
                             lambda: ops.spec_of(settings, source), "")
    confirm(f"create topic {target} ({spec.describe()}) and copy {source} -> {target}?"
             if spec else f"copy {source} -> {target}?", yes)
    _create(settings, target, spec)
    try:
        with progress(f"copy {source}") as update:
            read, written = ops.copy(settings, source, target, start=start, stop=stop,
                                     event_type=event_type, on_progress=update)
    except KeyboardInterrupt:
        err.print("interrupted: records already acknowledged stay in the target")
        raise typer.Exit(130) from None
    except ops.OpsError as exc:
        raise fail(exc) from None
    err.print(f"read {read}, wrote {written} record(s) to {target}")
