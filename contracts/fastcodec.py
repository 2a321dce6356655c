"""Decoding the worker's events without building pydantic objects: msgspec Structs generated from
the contracts' own validation schemas, trusted only where they prove pydantic's verdict.

Why: a profile of the worker draining the throughput backlog (318 B per event) put 48 % of its
Python time in ``codec.decode`` (pydantic's ``model_validate`` 34 %, orjson and the codec 13 %)
and 14 % in building store operations from the models (bench/results/profile-worker-python.md).
On the same events (one core, same run) ``codec.decode`` took 5.9 us and :func:`decode` 2.7 us
(purchases 7.0 vs 3.2 us); with it the worker's CPU per event went from 17.7 to 8.3 us.

The rule, proven by ``tests/unit/test_fastcodec.py`` (hypothesis: valid events built from the
models' schemas, the same with values changed to near misses, edges and other JSON types, fields
removed or added, raw byte mutations, datetimes with offsets, schema versions):
**what :func:`decode` accepts, pydantic accepts with equal values; what it does not accept it
returns as None**, and the caller then calls ``codec.decode``, whose verdict (an event, or the
exact dead-letter reason) is the one that counts. The fast path can only be stricter than the
contracts, never looser, so dead letters are unchanged.

How the rule holds by construction:

- The Structs are generated from each event class's pydantic-core schema
  (``__pydantic_core_schema__``, the schema pydantic validates with), not written by hand, so a
  new field or constraint cannot be forgotten. A schema node or key the generator does not know
  (a new validator, an alias, a strip or case option, a float) makes that event type
  *unsupported*: it is always decoded by pydantic (:data:`UNSUPPORTED` says why; today
  ``question.asked`` and ``answer.posted``, whose text pydantic strips, and
  ``experiment.started``, which has a float).
- Unknown fields fall back (``forbid_unknown_fields``): msgspec's JSON parser skips an unknown
  field's value without the checks orjson (``codec.decode``'s parser) makes (invalid UTF-8,
  ``1e999``, nesting depth), and it is only trusted on values it decodes into typed fields,
  where it checks them. An event from a newer producer with an extra optional field therefore
  costs pydantic's price until this code knows the field. (Parsing with orjson and converting
  with ``msgspec.convert`` instead measured 4.5 against 2.9 us per event.)
- Where pydantic is lax, the fast path is strict: no str -> int or float -> int coercion, no
  ``true`` for an int, no number for a string. Integers are bounded to 64 bits (pydantic
  refuses larger ones, msgspec would not).
- Fields pydantic fills from a default factory (``event_id``, ``occurred_at``) are required.
- ``schema_version`` above the class's ``SCHEMA_VERSION`` falls back, so the dead letter says
  ``unsupported_schema_version`` as before.
- Patterns: pydantic-core runs them with Rust's regex, where ``$`` matches only at the end;
  Python's ``$`` also matches before a final newline, so ``$`` becomes ``\\Z`` (patterns with
  escapes, which could differ between the engines, are unsupported). They are checked in the
  Structs' generated ``__post_init__`` with ``re`` (msgspec's ``Meta(pattern=...)`` measured
  1.3 us per string against 0.2 us).
- Datetimes: accepted only as RFC 3339 text (``T``, ``Z`` or ``+HH:MM``, at most 6 fractional
  digits: msgspec's own datetime decoding would round a 7th, pydantic truncates), parsed by
  ``fromisoformat`` and, where the contract converts to UTC (``_utc``), converted; an instant
  without a UTC representation (``0001-01-01T00:00:00+00:04``) falls back, as pydantic rejects it.
- Decimals (``Money``): accepted only as strings of a plain decimal within ``max_digits`` /
  ``decimal_places`` / ``ge=0``, without leading zeros or exponent; JSON numbers fall back.
- UUIDs: accepted only in canonical form (lower-case hex with hyphens) and kept as that text,
  ``str(uuid)``, which is what the store's operations carry (``UUID.__str__`` was 2-3 % of the
  old worker's profile). The one value whose type differs from pydantic's; the test compares
  ``struct.event_id == str(model.event_id)``.

A Struct has the pydantic model's attribute names (``e.event_type``, ``e.payload.order_id``,
``e.occurred_at``), so code written against the models (``services.counters.store``'s builders)
reads either. :data:`STRUCTS` maps each supported event class to its Struct.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

import msgspec

from contracts import events as ev
from contracts.codec import MAX_EVENT_BYTES

#: orjson parses integer literals within 64 bits as ints and larger ones as floats
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
_RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)


class Unsupported(Exception):
    """A schema node the generator cannot reproduce exactly: its event type stays on pydantic."""


class _Context:
    def __init__(self) -> None:
        self.definitions: dict[str, dict] = {}
        self.structs: dict[type, type[msgspec.Struct]] = {}


# A node becomes (msgspec type, fix): msgspec checks the type, lengths, bounds and literals in C;
# ``fix`` checks the rest in the Struct's generated __post_init__ (straight-line code, one
# statement per field) and converts text to the model's type. Patterns are checked there with
# ``re`` rather than msgspec.Meta(pattern=...): measured 1.3 us per constrained string through
# msgspec against 0.2 us for a compiled pattern's search.
@dataclass(frozen=True)
class Fix:
    #: a compiled pattern's search the text must match, if any
    search: Callable[[str], Any] | None = None
    #: then the value becomes ``convert(value)`` (raising ValueError for an invalid one), if any
    convert: Callable[[Any], Any] | None = None
    #: null is allowed (and left as it is)
    nullable: bool = False


def _translate_pattern(pattern: str) -> Fix:
    """A pydantic-core (Rust regex) pattern as a Python pattern with the same matches."""
    if "\\" in pattern or not pattern.startswith("^") or not pattern.endswith("$"):
        raise Unsupported(f"pattern {pattern!r}")
    if "$" in pattern[:-1] or "^" in pattern[1:].replace("[^", ""):
        raise Unsupported(f"pattern {pattern!r}")
    return Fix(search=re.compile(pattern[:-1] + r"\Z").search)


def _checked(search: Callable[[str], Any], value: str) -> str:
    if search(value) is None:
        raise ValueError("does not match")
    return value


def _keys(schema: dict, allowed: set[str]) -> None:
    extra = set(schema) - allowed - {"type", "metadata", "serialization", "ref"}
    if extra:
        raise Unsupported(f"{schema['type']} with {sorted(extra)}")


def _meta(tp: Any, schema: dict, keys: tuple[str, ...], **more: Any) -> Any:
    meta = {k: schema[k] for k in keys if k in schema} | more
    return Annotated[tp, msgspec.Meta(**meta)] if meta else tp


_UUID_MATCH = Fix(search=re.compile(_UUID).search)
_RFC3339_SEARCH = re.compile(_RFC3339).search


def _datetime_fix(utc: bool) -> Fix:
    def convert(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        if not utc or text[-1] == "Z":  # fromisoformat's Z is datetime.UTC already
            return moment
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None

    # RFC 3339 text only, at most 6 fractional digits (fromisoformat also reads other forms)
    return Fix(search=_RFC3339_SEARCH, convert=convert)


def _decimal_fix(schema: dict) -> Fix:
    _keys(schema, {"max_digits", "decimal_places", "ge"})
    places, digits = schema.get("decimal_places"), schema.get("max_digits")
    if schema.get("ge") != 0 or places is None or digits is None or not 0 < places < digits:
        raise Unsupported(f"decimal {schema}")
    search = re.compile(
        rf"^(0|[1-9][0-9]{{0,{digits - places - 1}}})(\.[0-9]{{1,{places}}})?\Z"
    ).search
    return Fix(search=search, convert=Decimal)


def _field_type(schema: dict, ctx: _Context) -> tuple[Any, Fix]:
    """(msgspec type, fix) for one core-schema node."""
    kind = schema["type"]
    if kind == "str":
        _keys(schema, {"min_length", "max_length", "pattern", "strip_whitespace"})
        if schema.get("strip_whitespace"):
            raise Unsupported("str with strip_whitespace")
        fix = _translate_pattern(schema["pattern"]) if "pattern" in schema else None
        return _meta(str, schema, ("min_length", "max_length")), fix
    if kind == "int":
        _keys(schema, {"ge", "le", "gt", "lt"})
        bounds = {"ge": max(schema.get("ge", _INT_MIN), _INT_MIN)}
        bounds["le"] = min(schema.get("le", _INT_MAX), _INT_MAX)
        return _meta(int, schema, ("gt", "lt"), **bounds), None
    if kind == "float":
        # msgspec's and orjson's float parsers are not proven to round every literal alike
        raise Unsupported("float")
    if kind == "bool":
        _keys(schema, set())
        return bool, None
    if kind == "uuid":
        _keys(schema, set())
        return str, _UUID_MATCH
    if kind == "literal":
        _keys(schema, {"expected"})
        expected = schema["expected"]
        if not expected or not all(type(v) is str for v in expected):
            raise Unsupported(f"literal {expected!r}")
        return Literal[tuple(expected)], None
    if kind == "datetime":
        return _datetime(schema, utc=False)
    if kind == "decimal":
        return str, _decimal_fix(schema)
    if kind == "function-after":
        _keys(schema, {"function", "schema"})
        inner, function = schema["schema"], schema["function"]
        if function.get("function") is ev._utc and inner["type"] == "datetime":
            return _datetime(inner, utc=True)
        raise Unsupported(f"validator {function.get('function')!r}")
    if kind == "function-before":
        _keys(schema, {"function", "schema"})
        inner, function = schema["schema"], schema["function"]
        # _money_from_str only refuses floats; the fast form accepts strings only
        if function.get("function") is ev._money_from_str and inner["type"] == "decimal":
            return _field_type(inner, ctx)
        raise Unsupported(f"validator {function.get('function')!r}")
    if kind == "nullable":
        _keys(schema, {"schema"})
        inner, fix = _field_type(schema["schema"], ctx)
        return inner | None, (None if fix is None else replace(fix, nullable=True))
    if kind == "list":
        _keys(schema, {"items_schema", "min_length", "max_length"})
        item, fix = _field_type(schema["items_schema"], ctx)
        tp = _meta(list[item], schema, ("min_length", "max_length"))
        return tp, (None if fix is None else _each(fix))
    if kind == "definition-ref":
        return _field_type(ctx.definitions[schema["schema_ref"]], ctx)
    if kind == "model":
        return _struct(schema, ctx), None
    raise Unsupported(f"schema type {kind!r}")


def _datetime(schema: dict, utc: bool) -> tuple[Any, Fix]:
    _keys(schema, {"tz_constraint", "microseconds_precision"})
    if schema.get("tz_constraint") != "aware":
        raise Unsupported("datetime without tz_constraint='aware'")
    if schema.get("microseconds_precision", "truncate") != "truncate":
        raise Unsupported("datetime precision")
    return str, _datetime_fix(utc)


def _each(fix: Fix) -> Fix:
    if fix.nullable:
        raise Unsupported("list of nullable items with checks")
    search, convert = fix.search, fix.convert or (lambda value: value)

    def each(values: list) -> list:
        if search is not None:
            for value in values:
                _checked(search, value)
        return [convert(v) for v in values]

    return Fix(convert=each)


def _model_fields(schema: dict, ctx: _Context) -> tuple[list, list]:
    """Struct fields and fixes of a ``model`` node's fields."""
    _keys(schema, {"cls", "config", "custom_init", "root_model", "schema"})
    config = schema.get("config", {})
    unknown = set(config) - {"extra_fields_behavior", "str_strip_whitespace", "title"}
    if unknown or config.get("str_strip_whitespace") or schema.get("custom_init"):
        raise Unsupported(f"model config {config}")
    if config.get("extra_fields_behavior", "ignore") != "ignore" or schema.get("root_model"):
        raise Unsupported(f"model config {config}")
    inner = schema["schema"]
    if inner["type"] != "model-fields" or inner.get("computed_fields"):
        raise Unsupported(f"model schema {inner['type']}")
    _keys(inner, {"fields", "model_name", "computed_fields"})
    fields, fixes = [], []
    for name, field in inner["fields"].items():
        _keys(field, {"schema"})
        node, default = field["schema"], msgspec.NODEFAULT
        if node["type"] == "default":
            _keys(node, {"schema", "default", "default_factory", "default_factory_takes_data"})
            if "default" in node:  # a default factory's field is required here
                default = node["default"]
                if default is not None and type(default) not in (str, int, float, bool):
                    raise Unsupported(f"default {default!r}")
            node = node["schema"]
        tp, fix = _field_type(node, ctx)
        fields.append((name, tp) if default is msgspec.NODEFAULT else (name, tp, default))
        if fix is not None:
            fixes.append((name, fix))
    return fields, fixes


def _post_init(fixes: list[tuple[str, Fix]]) -> Callable[[Any], None]:
    """The Struct's __post_init__, as straight-line code (a loop over the fixes with getattr,
    setattr and a call per check cost about twice as much): per field
    ``if search(v) is None: raise ValueError`` and ``self.f = convert(v)``, under
    ``if v is not None:`` where null is allowed. msgspec turns the ValueError into a
    ValidationError."""
    lines, functions = ["def __post_init__(self):"], {}
    for i, (name, fix) in enumerate(fixes):
        if not name.isidentifier():
            raise Unsupported(f"field name {name!r}")
        lines.append(f"    v = self.{name}")
        indent = "    "
        if fix.nullable:
            lines.append("    if v is not None:")
            indent = "        "
        if fix.search is not None:
            functions[f"s{i}"] = fix.search
            lines.append(f"{indent}if s{i}(v) is None:")
            lines.append(f"{indent}    raise ValueError({name!r})")
        if fix.convert is not None:
            functions[f"c{i}"] = fix.convert
            lines.append(f"{indent}self.{name} = c{i}(v)")
    exec("\n".join(lines), functions)  # noqa: S102 — code built above from field names only
    return functions["__post_init__"]


def _struct(schema: dict, ctx: _Context, tag: str | None = None) -> type[msgspec.Struct]:
    """The Struct of a model node (one per model class; each event's envelope its own, tagged
    with its wire name)."""
    cls = schema["cls"]
    if tag is None and cls in ctx.structs:
        return ctx.structs[cls]
    fields, fixes = _model_fields(schema, ctx)
    namespace = {"__post_init__": _post_init(fixes)} if fixes else {}
    options: dict[str, Any] = {}
    if tag is not None:
        options = {"tag_field": "event_type", "tag": tag}
        namespace["event_type"] = tag  # as on the models: event.event_type
    struct = msgspec.defstruct(
        f"Fast{cls.__name__}",
        fields,
        kw_only=True,
        # an unknown field falls back to pydantic: msgspec's parser skips unknown values more
        # leniently than orjson (invalid UTF-8, 1e999), so only typed values are parsed here
        forbid_unknown_fields=True,
        # these Structs never form reference cycles: the collector need not track them
        gc=False,
        namespace=namespace,
        **options,
    )
    if tag is None:
        ctx.structs[cls] = struct
    return struct


def _event_struct(cls: type[ev.Event], ctx: _Context) -> type[msgspec.Struct]:
    schema = cls.__pydantic_core_schema__
    if schema["type"] == "definitions":
        for definition in schema["definitions"]:
            ctx.definitions[definition["ref"]] = definition
        schema = schema["schema"]
    if schema["type"] == "definition-ref":
        schema = ctx.definitions[schema["schema_ref"]]
    if schema["type"] != "model" or schema["cls"] is not cls:
        raise Unsupported(f"event schema {schema['type']}")
    fields = schema["schema"]["fields"]
    # The envelope: event_type is the union's tag; a schema_version newer than this code's line falls back, so that the dead letter says
    # unsupported_schema_version
    version = fields["schema_version"]["schema"]
    if version != {"type": "int", "ge": 1}:
        raise Unsupported(f"schema_version {version}")
    envelope = {
        **schema,
        "schema": {
            **schema["schema"],
            "fields": {
                **{k: v for k, v in fields.items() if k != "event_type"},
                "schema_version": {
                    "type": "model-field",
                    "schema": {"type": "int", "ge": 1, "le": cls.SCHEMA_VERSION},
                },
            },
        },
    }
    return _struct(envelope, ctx, tag=cls.EVENT_TYPE)


def _generate() -> tuple[dict[type, type[msgspec.Struct]], dict[str, str]]:
    ctx, structs, unsupported = _Context(), {}, {}
    for event_type, cls in ev.EVENT_TYPES.items():
        try:
            structs[cls] = _event_struct(cls, ctx)
        except Unsupported as exc:
            unsupported[event_type] = str(exc)
    return structs, unsupported


#: the fast Struct of every event class whose whole schema the generator reproduces
STRUCTS: dict[type[ev.Event], type[msgspec.Struct]]
#: event types always decoded by pydantic, and why
UNSUPPORTED: dict[str, str]
STRUCTS, UNSUPPORTED = _generate()

_decoder = msgspec.json.Decoder(Union[tuple(STRUCTS.values())])  # noqa: UP007
_decode = _decoder.decode


def decode(raw: bytes | bytearray | memoryview | None) -> Any | None:
    """The event as its fast Struct, or None: not proven valid here (``codec.decode`` decides)."""
    if raw is None or len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        return _decode(raw)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
