"""Generate JSON Schemas for every event into ``contracts/schemas/`` and check compatibility.

One file per event type and version line: ``<event_type>.v<schema_version>.json``. Old version
lines stay on disk so that consumers in other languages can still read them.

Run: ``socialproof contracts generate`` (write) or ``socialproof contracts check`` (verify).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.events import EVENT_TYPES, Event
from contracts.topics import DeadLetter

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_filename(cls: type[Event]) -> str:
    return f"{cls.EVENT_TYPE}.v{cls.SCHEMA_VERSION}.json"


def event_schema(cls: type[Event]) -> dict[str, Any]:
    schema = cls.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"socialproof:{cls.EVENT_TYPE}:v{cls.SCHEMA_VERSION}"
    schema["title"] = cls.EVENT_TYPE
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def expected_files() -> dict[str, str]:
    files = {schema_filename(cls): render(event_schema(cls)) for cls in EVENT_TYPES.values()}
    dead = DeadLetter.model_json_schema(mode="serialization")
    dead["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    files["deadletter.v1.json"] = render(dead)
    return files


def generate(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every current schema; returns the names of files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in expected_files().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed.append(name)
    return changed


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Schema files that are missing or differ from what the models generate now."""
    return [
        name
        for name, text in expected_files().items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]


# --- compatibility within a version line ---------------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema.get("$defs", {})[name]
    return node


def _shape(node: dict[str, Any]) -> Any:
    """What a property may hold, without descriptions, titles and examples."""
    ignored = {"description", "title", "examples", "default"}
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k not in ignored}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return node


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` cannot replace ``old`` within one version line (empty when it can).

    Allowed: new optional properties. Not allowed: removing a property, changing what an existing
    property accepts, or making any property required that was not.
    """
    problems: list[str] = []

    def walk(old_node: dict[str, Any], new_node: dict[str, Any], path: str) -> None:
        old_node, new_node = _resolve(old, old_node), _resolve(new, new_node)
        old_props = old_node.get("properties", {})
        new_props = new_node.get("properties", {})
        for name in old_props:
            if name not in new_props:
                problems.append(f"{path}{name}: removed")
        added_required = set(new_node.get("required", [])) - set(old_node.get("required", []))
        for name in sorted(added_required):
            problems.append(f"{path}{name}: became required")
        for name, old_prop in old_props.items():
            if name not in new_props:
                continue
            new_prop = new_props[name]
            ro, rn = _resolve(old, old_prop), _resolve(new, new_prop)
            if "properties" in ro and "properties" in rn:
                walk(ro, rn, f"{path}{name}.")
            elif ro.get("type") == "array" and rn.get("type") == "array":
                ri, ni = _resolve(old, ro.get("items", {})), _resolve(new, rn.get("items", {}))
                if "properties" in ri and "properties" in ni:
                    walk(ri, ni, f"{path}{name}[].")
                elif _shape(ri) != _shape(ni):
                    problems.append(f"{path}{name}[]: items changed")
                if _shape({k: v for k, v in ro.items() if k != "items"}) != _shape(
                    {k: v for k, v in rn.items() if k != "items"}
                ):
                    problems.append(f"{path}{name}: array constraints changed")
            elif _shape(ro) != _shape(rn):
                problems.append(f"{path}{name}: type or constraints changed")

    walk(old, new, "")
    return problems
