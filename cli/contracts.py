"""``socialproof contracts …``: the event schemas (generate, check) and the topic registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.common import fail, out

app = typer.Typer(help="The event contracts: schemas and the topic registry.")


@app.command("generate")
def contracts_generate() -> None:
    """Regenerate the JSON Schemas in contracts/schemas/."""
    from contracts.schemagen import SCHEMA_DIR, generate

    changed = generate()
    out.print(f"{len(changed)} schema file(s) written to {SCHEMA_DIR}: {', '.join(changed)}")


@app.command("check")
def contracts_check() -> None:
    """Fail if contracts/schemas/ is stale or a change breaks its version line."""
    import json as _json

    from contracts.schemagen import SCHEMA_DIR, expected_files, incompatibilities, stale_files

    problems = []
    for name, text in expected_files().items():
        path = SCHEMA_DIR / name
        if path.exists():
            problems += [
                f"{name}: {p}"
                for p in incompatibilities(_json.loads(path.read_text()), _json.loads(text))
            ]
    stale = stale_files()
    if problems:
        raise fail(
            "incompatible within a version line (start a new schema_version):\n  "
            + "\n  ".join(problems)
        )
    if stale:
        raise fail(f"stale schemas: {', '.join(stale)}; run `socialproof contracts generate`")
    out.print("contracts/schemas is up to date and compatible")


@app.command("topics")
def contracts_topics(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the topic registry."""
    from contracts.topics import ALL_TOPICS

    rows = [
        {
            "name": t.name,
            "key": t.key,
            "events": [cls.EVENT_TYPE for cls in t.value_types],
            "writer": t.writer,
            "partitions": t.partitions,
            "cleanup_policy": t.cleanup_policy,
            "retention_ms": t.retention_ms,
        }
        for t in ALL_TOPICS
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="topic registry")
    for col in ("name", "key", "events", "writer", "partitions", "cleanup", "retention"):
        table.add_column(col)
    for r in rows:
        retention = "forever" if r["retention_ms"] == -1 else f"{r['retention_ms'] // 86_400_000}d"
        table.add_row(
            r["name"],
            r["key"],
            ", ".join(r["events"]) or "(dead letters)",
            r["writer"],
            str(r["partitions"]),
            r["cleanup_policy"],
            retention,
        )
    out.print(table)
