"""The fast decoder (contracts/fastcodec.py) against pydantic's verdict.

The rule: what ``fastcodec.decode`` accepts, ``codec.decode`` (pydantic) accepts with equal values;
what it does not accept the worker decodes with ``codec.decode``, so a dead letter's reason is
pydantic's. Proven here on events generated from the models' own validation schemas (valid ones,
and the same with values mutated into invalid or non-canonical forms, unknown fields, boundary
strings, datetimes with offsets and long fractions, schema versions) and on raw byte mutations of
their JSON; plus the cases that differ between msgspec, orjson and pydantic, one by one.
"""

from __future__ import annotations

import copy
import json
import re
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from contracts import codec, fastcodec
from contracts import events as ev
from services.counters.store import operation
from tools.loadgen import LoadConfig, LoadGenerator

#: the event types the fast path leaves to pydantic, and the reason the generator gives
EXPECTED_UNSUPPORTED = {
    "question.asked": "str with strip_whitespace",
    "answer.posted": "str with strip_whitespace",
    "experiment.started": "float",
}
#: the throughput workload's events (tools.loadgen): these must take the fast path
HOT = (
    ev.PurchaseCompleted,
    ev.OrderRefunded,
    ev.OrderCancelled,
    ev.ReviewPosted,
    ev.ReviewEdited,
    ev.ReviewDeleted,
    ev.ProductShared,
    ev.PrivacySettingsChanged,
    ev.FriendshipAdded,
    ev.UserProfileUpdated,
    ev.UserErased,
)

EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the verdict ---------------------------------------------------------------------------------


def same(fast: Any, model: Any, path: str = "event") -> None:
    """``fast`` (a Struct or value) holds exactly the values of ``model`` (pydantic's)."""
    if isinstance(model, BaseModel):
        names = set(type(model).model_fields) - {"event_type"}
        assert set(type(fast).__struct_fields__) == names, path
        for name in names:
            same(getattr(fast, name), getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        assert isinstance(fast, list) and len(fast) == len(model), path
        for i, (f, m) in enumerate(zip(fast, model, strict=True)):
            same(f, m, f"{path}[{i}]")
    elif isinstance(model, uuid.UUID):  # the one documented difference: canonical text
        assert fast == str(model), path
    elif isinstance(model, datetime):
        assert isinstance(fast, datetime) and fast == model, path
        assert fast.utcoffset() == model.utcoffset(), path
    elif isinstance(model, Decimal):
        assert isinstance(fast, Decimal) and str(fast) == str(model), path
    else:
        assert type(fast) is type(model) and fast == model, (path, fast, model)


def verdict(raw: bytes) -> tuple[Any, Any]:
    """(fast Struct or None, pydantic's event or its dead-letter reason); fails the test when the
    fast path accepted what pydantic rejects or read other values."""
    fast = fastcodec.decode(raw)
    try:
        model: Any = codec.decode(raw)
    except codec.EventDecodeError as exc:
        model = exc.reason
    if fast is not None:
        assert not isinstance(model, str), f"fast accepted what pydantic rejects ({model}): {raw!r}"
        assert fast.event_type == model.event_type
        same(fast, model)
    return fast, model


# --- inputs from the models' schemas -------------------------------------------------------------


def _offset_datetimes() -> st.SearchStrategy[datetime]:
    offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
    return st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
    )


def strategy(schema: dict, definitions: dict[str, dict]) -> st.SearchStrategy:
    """Valid JSON values for one pydantic-core schema node (in the forms producers write)."""
    kind = schema["type"]
    if kind == "definitions":
        for definition in schema["definitions"]:
            definitions[definition["ref"]] = definition
        return strategy(schema["schema"], definitions)
    if kind == "definition-ref":
        return strategy(definitions[schema["schema_ref"]], definitions)
    if kind == "str":
        lo, hi = schema.get("min_length", 0), schema.get("max_length", 30)
        if "pattern" in schema:
            pattern = schema["pattern"][:-1] + r"\Z"
            return st.from_regex(pattern).filter(lambda s: lo <= len(s) <= hi)
        texts = st.text(min_size=lo, max_size=min(hi, 30)) | st.just("x" * hi)
        if schema.get("strip_whitespace"):  # the stripped text must fit
            texts = texts.filter(lambda s: lo <= len(s.strip()) <= hi)
        return texts
    if kind == "int":
        lo, hi = schema.get("ge", -(2**63)), schema.get("le", 2**63 - 1)
        return st.integers(lo, hi) | st.sampled_from([lo, hi])
    if kind == "float":
        return st.floats(schema.get("gt", 0) + 1e-9, schema.get("le", 10))
    if kind == "bool":
        return st.booleans()
    if kind == "uuid":
        return st.uuids().map(str)
    if kind == "literal":
        return st.sampled_from(schema["expected"])
    if kind == "datetime":
        return _offset_datetimes().map(lambda d: d.isoformat().replace("+00:00", "Z"))
    if kind == "decimal":
        return st.decimals(min_value=0, max_value=Decimal("99999999.9999"), places=4).map(str)
    if kind in ("function-after", "function-before", "default"):
        return strategy(schema["schema"], definitions)
    if kind == "nullable":
        return st.none() | strategy(schema["schema"], definitions)
    if kind == "list":
        lo, hi = schema.get("min_length", 0), schema.get("max_length", 3)
        items = strategy(schema["items_schema"], definitions)
        return st.lists(items, min_size=lo, max_size=min(hi, lo + 2))
    if kind == "model":
        required, optional = {}, {}
        for name, field in schema["schema"]["fields"].items():
            target = optional if field["schema"]["type"] == "default" else required
            target[name] = strategy(field["schema"], definitions)
        return st.fixed_dictionaries(required, optional=optional)
    raise AssertionError(f"no strategy for {kind}")


def _complete(cls: type[ev.Event]) -> st.SearchStrategy[dict]:
    """A valid document of ``cls`` with the envelope fields producers always write (pydantic
    would fill a missing id or time with a new one; that case is one of the mutations)."""
    return st.builds(
        lambda doc, event_id, at: {
            **doc,
            "event_type": cls.EVENT_TYPE,
            "schema_version": 1,
            "event_id": event_id,
            "occurred_at": at,
        },
        strategy(cls.__pydantic_core_schema__, {}),
        st.uuids().map(str),
        _offset_datetimes().map(lambda d: d.isoformat().replace("+00:00", "Z")),
    )


_STRATEGIES = {cls: _complete(cls) for cls in ev.EVENT_TYPES.values()}


def documents(classes: tuple[type[ev.Event], ...] = tuple(ev.EVENT_TYPES.values())):
    """Valid events' JSON objects, built from their classes' validation schemas."""
    return st.one_of(*(_STRATEGIES[cls] for cls in classes))


def _datetime_texts() -> st.SearchStrategy[str]:
    def render(moment: datetime, style: int, extra: str) -> str:
        text = moment.isoformat()
        if style == 1:
            text = text.replace("+00:00", "Z")
        elif style == 2 and moment.microsecond:  # 7 to 9 fractional digits
            text = text[:26] + extra + text[26:]
        elif style == 3:
            text = text.replace("T", " ")
        elif style == 4:
            text = text[:-3] + text[-2:]  # +HHMM
        elif style == 5:
            text = text[:19]  # naive
        elif style == 6:
            text = text.lower()
        return text

    return st.builds(
        render,
        _offset_datetimes(),
        st.integers(0, 6),
        st.text("0123456789", min_size=1, max_size=3),
    )


_DATETIME_EDGES = st.sampled_from(
    [
        "0001-01-01T00:00:00+00:04",  # no UTC time: pydantic rejects
        "9999-12-31T23:59:59-00:01",
        "2026-11-24T10:00:00.9999995Z",  # msgspec would round up to the next second
        "2026-11-24T10:00Z",
        "2026-11-24T23:59:60Z",
        "2026-02-30T10:00:00Z",
        "2026-11-24T10:00:00+24:00",
        "2026-11-24T10:00:00-00:00",
        "2026-11-24T10:00:00,5Z",
        "2026-11-24T10:00:00.Z",
        "2026-11-24",
        "2026-11-24T10:00:00",
        "2026-11-24T10:00:00Z\n",
    ]
)
#: strings put in place of a document's strings: where parsers and validators differ
# fmt: off
STRING_EDGES = st.one_of(
    st.sampled_from(
        [
            "", "1", "u1\n", "u1 ", " u1", "-u1", "x" * 64, "x" * 65, "x" * 128, "x" * 129, "é",
            "u:1@a.b-c_d", "u\x00", "EUR", "eur", "EUR\n", "lk-" + "a" * 26,
            "SP-0123456789ABCDEF", "link", "asker", "19.99", "0", "0.0", "1.50", "01.5", "1e2",
            "1E+2", "-0", "-1", " 1.5", "1.23456", "123456789.1", "99999999.9999", "0.00001",
            "NaN", "Infinity", "1_000", "3F0C6F9E-7B2A-4C5E-9D1A-0B1C2D3E4F50",
            "3f0c6f9e7b2a4c5e9d1a0b1c2d3e4f50", "{3f0c6f9e-7b2a-4c5e-9d1a-0b1c2d3e4f50}",
            "00000000-0000-0000-0000-000000000000",
            "urn:uuid:3f0c6f9e-7b2a-4c5e-9d1a-0b1c2d3e4f50", "true",
        ]
    ),
    _DATETIME_EDGES,
    _datetime_texts(),
    st.uuids().map(lambda u: str(u).upper()),
    st.text(max_size=4),
)
#: other values: other JSON types, coercible forms, bounds
OTHER_EDGES = st.one_of(
    st.sampled_from(
        [
            None, True, False, 0, 1, -1, 2, 5, 6, 1.0, 1.5, 2.0, "1", "", [], {}, 2**63 - 1,
            2**63, -(2**63) - 1, 2**64, 10**30, 10_000, 10_001, 3599, 3600, 2_592_000, 2_592_001,
            1_000_000, 1_000_001, 1e300,
        ]
    ),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)


# fmt: on


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path] if path else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += _paths(inner, (*path, i))
    return found


# fmt: off
def _string_changes(value: str) -> list[str]:
    """Near misses of a valid string: the edits that cross a pattern, length or format rule."""
    changes = [
        value + "\n", value + " ", " " + value, value.upper(), value.lower(), value + "0",
        value + "5", value * 2, value[:-1], value + "é", value.replace("-", ""),
    ]
    if re.match(r"[0-9]{4}-", value):  # a datetime: other forms of the same instant
        changes += [
            value[:19], value[:10], value[:16] + "Z", value.replace("T", " "),
            value.replace("Z", "+05:30"), value.replace("Z", "+0530"),
            value.replace("Z", "") + ".1234567Z", value.replace("Z", "-00:00"),
            "0001-01-01T00:00:00+00:04",
        ]
    return changes


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _other_changes(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return [int(value), str(value).lower(), None]
    if isinstance(value, int):
        return [
            value + 1, value - 1, -value, float(value), str(value), value == 1, 2**63,
            -(2**63) - 1, 2**64, 10**30, None,
        ]
    if isinstance(value, list):
        return [[], value + value[:1], None, value[:1]]
    return [None, "x", 0, [], {}]
# fmt: on


@st.composite
def mutated(draw: st.DrawFn) -> dict:
    """A valid document with one value changed (sometimes two or three): a near miss of the
    valid value, an edge of its kind or another JSON type; or a field removed or added."""
    doc = copy.deepcopy(draw(documents()))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        paths = _paths(doc)
        leaves = [p for p in paths if isinstance(_at(doc, p), str | int | float)]
        path = draw(st.sampled_from(leaves if leaves and draw(st.booleans()) else paths))
        *parents, last = path
        target = doc
        for key in parents:
            target = target[key]
        value = target[last]
        action = draw(st.sampled_from(["near"] * 6 + ["edge"] * 2 + ["delete", "add"]))
        if action == "near":
            near = _string_changes(value) if isinstance(value, str) else _other_changes(value)
            target[last] = draw(st.sampled_from(near))
        elif action == "edge":
            target[last] = draw(STRING_EDGES if isinstance(value, str) else OTHER_EDGES)
        elif action == "delete" and isinstance(target, dict):
            del target[last]
        elif isinstance(target, dict):
            target[draw(st.sampled_from(["note", "v2"]))] = draw(OTHER_EDGES)
    return doc


def valid_models(classes: tuple[type[ev.Event], ...]) -> st.SearchStrategy[ev.Event]:
    return documents(classes).map(codec.decode_obj)


SUPPORTED = tuple(c for c in ev.EVENT_TYPES.values() if c in fastcodec.STRUCTS)


# --- properties ----------------------------------------------------------------------------------


@EXAMPLES
@given(valid_models(SUPPORTED))
def test_every_valid_event_of_a_supported_type_takes_the_fast_path_with_pydantics_values(
    model: ev.Event,
) -> None:
    fast, again = verdict(codec.encode(model))  # the wire form producers write
    assert fast is not None, codec.encode(model)
    assert again == model


@EXAMPLES
@given(documents())
def test_valid_documents_in_any_offset_take_the_fast_path_where_supported(doc: dict) -> None:
    fast, model = verdict(json.dumps(doc, ensure_ascii=False).encode())
    assert not isinstance(model, str), model  # the generator makes valid events
    assert (fast is not None) is (type(model) in fastcodec.STRUCTS)


@settings(EXAMPLES, max_examples=400)
@given(mutated())
def test_mutated_documents_are_accepted_only_where_pydantic_accepts_them(doc: dict) -> None:
    verdict(json.dumps(doc, ensure_ascii=False).encode())
    # the same with escapes (\u00e9, \/) instead of raw UTF-8
    verdict(json.dumps(doc, ensure_ascii=True).replace("/", "\\/").encode())


@EXAMPLES
@given(
    documents(SUPPORTED),
    st.sampled_from(["occurred_at", "schema_version", "event_id"]),
    st.data(),
)
def test_envelopes_with_edge_times_versions_and_ids(doc: dict, field: str, data) -> None:
    doc |= {"event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T10:00:00Z"}
    doc[field] = data.draw(
        {
            "occurred_at": STRING_EDGES | _DATETIME_EDGES,
            "schema_version": st.integers(-1, 3) | st.sampled_from([True, "1", 1.0, None]),
            "event_id": STRING_EDGES | st.uuids().map(lambda u: u.hex),
        }[field]
    )
    verdict(json.dumps(doc, ensure_ascii=False).encode())


#: bytes spliced into or cut from valid JSON: quotes, escapes, invalid UTF-8, NUL, numbers
SPLICES = st.sampled_from(
    b'" \\ , } 0 - e9 \\ud800 \\u0000 null'.split()
    + [b" ", b"\n", b"\xff", b"\xed\xa0\x80", b"\x00"]
) | st.binary(min_size=1, max_size=3)


@EXAMPLES
@given(valid_models(SUPPORTED), st.data())
def test_raw_byte_mutations_never_make_the_fast_path_looser(model: ev.Event, data) -> None:
    raw = bytearray(codec.encode(model))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        what = data.draw(SPLICES)
        if data.draw(st.booleans()):
            raw[at:at] = what
        else:
            del raw[at : at + len(what)]
    verdict(bytes(raw))


# --- the known differences, one by one -----------------------------------------------------------


def purchase_doc(**changes: Any) -> dict:
    event = ev.PurchaseCompleted.create(
        {
            "order_id": "o1",
            "user_id": "u1",
            "currency": "EUR",
            "lines": [{"product_id": "p1", "quantity": 2, "unit_price": "19.99"}],
        },
        producer="orders",
        occurred_at=datetime(2026, 11, 24, 10, tzinfo=UTC),
    )
    doc = orjson.loads(codec.encode(event))
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("change", "fast_accepts", "pydantic"),
    [
        ({}, True, "ok"),
        ({"occurred_at": "2026-11-24T10:00:00.1234567Z"}, False, "ok"),  # msgspec would round
        ({"occurred_at": "2026-11-24T10:00:00+05:30"}, True, "ok"),
        ({"occurred_at": "0001-01-01T00:00:00+00:04"}, False, "invalid"),  # no UTC time
        ({"occurred_at": "2026-11-24T10:00:00"}, False, "invalid"),  # naive
        ({"occurred_at": 1795000000}, False, "ok"),  # pydantic reads a Unix time
        ({"payload__currency": "EUR\n"}, False, "invalid"),  # Python's $ matches before \n
        ({"payload__order_id": "x" * 128}, True, "ok"),
        ({"payload__order_id": "x" * 129}, False, "invalid"),
        ({"payload__lines__0__quantity": "2"}, False, "ok"),  # pydantic coerces, msgspec not
        ({"payload__lines__0__quantity": 2.0}, False, "ok"),
        ({"payload__lines__0__quantity": True}, False, "ok"),
        ({"payload__lines__0__unit_price": 19.99}, False, "invalid"),  # floats lose cents
        ({"payload__lines__0__unit_price": 19}, False, "ok"),
        ({"payload__lines__0__unit_price": "1e2"}, False, "ok"),
        ({"payload__lines__0__unit_price": "1.23456"}, False, "invalid"),
        ({"event_id": "3F0C6F9E-7B2A-4C5E-9D1A-0B1C2D3E4F50"}, False, "ok"),
        ({"event_id": "3f0c6f9e7b2a4c5e9d1a0b1c2d3e4f50"}, False, "ok"),
        ({"schema_version": 2}, False, "unsupported_schema_version"),
        ({"schema_version": 0}, False, "invalid"),
        ({"event_type": "purchase.refunded"}, False, "unknown_event_type"),
        ({"payload__referral": None, "payload__note": "from a newer producer"}, False, "ok"),
        ({"payload__lines__0__quantity": 2**64}, False, "invalid"),
    ],
)
def test_known_differences_fall_back_to_pydantic(change: dict, fast_accepts: bool, pydantic: str):
    fast, model = verdict(json.dumps(purchase_doc(**change)).encode())
    assert (fast is not None) is fast_accepts
    assert (model if isinstance(model, str) else "ok") == pydantic


@pytest.mark.parametrize(
    "raw",
    [
        # values msgspec's parser would skip without the checks orjson makes
        b'"note":"\xff",',
        b'"note":"\xed\xa0\x80",',
        b'"note":1e999,',
        b'"note":' + b"[" * 2000 + b"]" * 2000 + b",",
        # duplicate keys: the last one wins in both parsers
        b'"event_type":"order.cancelled",',
    ],
)
def test_what_orjson_refuses_or_reads_otherwise_never_takes_the_fast_path(raw: bytes) -> None:
    doc = codec.encode(ev.PurchaseCompleted.model_validate(purchase_doc()))
    fast, _ = verdict(b"{" + raw + doc[1:])
    assert fast is None


def test_a_duplicate_key_is_read_as_its_last_value_by_both() -> None:
    doc = codec.encode(ev.PurchaseCompleted.model_validate(purchase_doc()))
    fast, model = verdict(doc[:-1] + b',"producer":"second"}')
    assert fast is not None and fast.producer == model.producer == "second"


def test_tombstones_and_oversized_records_are_left_to_the_codec() -> None:
    assert fastcodec.decode(None) is None
    big = orjson.dumps(purchase_doc(producer="p", payload__note="x" * codec.MAX_EVENT_BYTES))
    assert fastcodec.decode(big) is None


# --- the generated Structs -----------------------------------------------------------------------


def test_the_structs_are_generated_for_every_event_type_but_the_listed_ones() -> None:
    assert fastcodec.UNSUPPORTED == EXPECTED_UNSUPPORTED
    assert set(fastcodec.STRUCTS) == {
        cls for name, cls in ev.EVENT_TYPES.items() if name not in EXPECTED_UNSUPPORTED
    }
    assert all(cls in fastcodec.STRUCTS for cls in HOT)


def test_each_struct_has_its_models_fields_recursively() -> None:
    def model_fields(model: type[BaseModel]) -> dict:
        return {
            name: (model_fields(inner) if (inner := _model_in(f.annotation)) else None)
            for name, f in model.model_fields.items()
            if name != "event_type"
        }

    def struct_fields(struct: Any) -> dict:
        return {
            f.name: (struct_fields(inner) if (inner := _struct_in(f.type)) else None)
            for f in msgspec.inspect.type_info(struct).fields
        }

    for cls, struct in fastcodec.STRUCTS.items():
        assert struct_fields(struct) == model_fields(cls), cls.__name__
        assert struct.event_type == cls.EVENT_TYPE


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation holds, through Optional, list and Annotated, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if found := _model_in(arg):
            return found
    return None


def _struct_in(tp: Any) -> Any:
    """The Struct a field type holds (through Optional and list), if any."""
    while True:
        if isinstance(tp, msgspec.inspect.UnionType):
            tp = next(t for t in tp.types if not isinstance(t, msgspec.inspect.NoneType))
        elif isinstance(tp, msgspec.inspect.ListType):
            tp = tp.item_type
        elif isinstance(tp, msgspec.inspect.StructType):
            return tp.cls
        else:
            return None


@pytest.mark.parametrize("buyers", [2**63 - 1, 2**63, 10**30])
def test_integers_past_64_bits_fall_back_to_pydantic(buyers: int) -> None:
    earned = {
        "event_id": "3f0c6f9e-7b2a-4c5e-9d1a-0b1c2d3e4f50",
        "event_type": "promotion.reward_earned",
        "schema_version": 1,
        "occurred_at": "2026-11-24T10:00:00Z",
        "producer": "processor",
        "payload": {
            "reward_id": "r1",
            "promotion_id": "pr1",
            "role": "sharer",
            "user_id": "u1",
            "coupon": "SP-0123456789ABCDEF",
            "reward": {"kind": "fixed", "value": "5"},
            "buyers": buyers,  # no upper bound in the contract
        },
    }
    fast, _ = verdict(json.dumps(earned).encode())
    assert (fast is not None) is (buyers < 2**63)


# --- the store's operations ----------------------------------------------------------------------


@EXAMPLES
@given(valid_models(SUPPORTED))
def test_the_store_builds_the_same_operation_from_the_struct_as_from_the_model(
    model: ev.Event,
) -> None:
    fast = fastcodec.decode(codec.encode(model))
    assert operation(fast) == operation(model)


def test_the_load_generators_events_give_the_same_operations_both_ways() -> None:
    gen = LoadGenerator(LoadConfig(seed=3, users=50, products=10, mean_friends=5))
    events = [*gen.setup_events(), *gen.activity_events(2000), *gen.erase_events(2)]
    for event in events:
        fast = fastcodec.decode(codec.encode(event))
        if type(event) in fastcodec.STRUCTS:
            assert operation(fast) == operation(event), event
        else:
            assert fast is None
