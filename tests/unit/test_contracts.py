"""The contracts: envelope rules, wire codec, generated schemas, compatibility, topic registry."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import jsonschema
import pytest
from pydantic import ValidationError

from contracts import codec
from contracts import events as ev
from contracts.schemagen import SCHEMA_DIR, expected_files, incompatibilities, stale_files
from contracts.topics import ALL_TOPICS, BY_NAME, EVENT_TOPICS, ORDERS, topic_for


def purchase(**payload_overrides) -> ev.PurchaseCompleted:
    payload = {
        "order_id": "o1",
        "user_id": "u1",
        "currency": "EUR",
        "lines": [{"product_id": "p1", "quantity": 2, "unit_price": "19.99"}],
        **payload_overrides,
    }
    return ev.PurchaseCompleted.create(payload, producer="orders")


# --- envelope ------------------------------------------------------------------------------------


def test_event_types_are_explicit_past_tense_wire_names_not_class_names() -> None:
    for wire_name, cls in ev.EVENT_TYPES.items():
        assert wire_name != cls.__name__
        assert wire_name == wire_name.lower() and "." in wire_name
        verb = wire_name.rsplit(".", 1)[1].split("_")[-1]
        irregular = {"withdrawn"}  # past participles that do not end in -ed
        assert verb.endswith("ed") or verb in irregular, f"{wire_name} is not past tense"


def test_envelope_fills_id_time_version_and_producer() -> None:
    event = purchase()
    assert event.event_type == "purchase.completed"
    assert event.schema_version == 1
    assert event.producer == "orders"
    assert event.occurred_at.tzinfo is not None
    assert purchase().event_id != event.event_id


def test_occurred_at_is_normalised_to_utc_and_naive_times_are_refused() -> None:
    cet = timezone(timedelta(hours=1))
    event = ev.ProductShared.create(
        {"share_id": "s1", "user_id": "u1", "product_id": "p1", "channel": "x"},
        producer="social",
        occurred_at=datetime(2026, 11, 24, 12, 0, tzinfo=cet),
    )
    assert event.occurred_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match="timezone"):
        ev.ProductShared.create(
            {"share_id": "s1", "user_id": "u1", "product_id": "p1", "channel": "x"},
            producer="social",
            occurred_at=datetime(2026, 11, 24, 12, 0),
        )


def test_money_is_a_decimal_string_on_the_wire_and_floats_are_refused() -> None:
    wire = json.loads(codec.encode(purchase()))
    assert wire["payload"]["lines"][0]["unit_price"] == "19.99"
    with pytest.raises(ValidationError, match="decimal string"):
        purchase(lines=[{"product_id": "p1", "quantity": 1, "unit_price": 19.99}])


def test_event_round_trips_through_the_wire_format() -> None:
    event = purchase()
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert isinstance(decoded, ev.PurchaseCompleted)
    assert decoded.payload.lines[0].unit_price == Decimal("19.99")


def test_readers_ignore_unknown_optional_fields_of_a_newer_producer() -> None:
    wire = json.loads(codec.encode(purchase()))
    wire["payload"]["gift_wrap"] = "WINTER"
    wire["trace_id"] = "abc"
    assert codec.decode(json.dumps(wire).encode()).payload.order_id == "o1"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json at all", "not_json"),
        (b"[1, 2]", "invalid"),
        (b'{"event_type": "purchase.teleported", "schema_version": 1}', "unknown_event_type"),
        (b'{"event_type": "purchase.completed", "schema_version": 1, "payload": {}}', "invalid"),
        (None, "invalid"),
        (b" " * (codec.MAX_EVENT_BYTES + 1), "too_large"),
    ],
)
def test_decode_classifies_every_failure(raw: bytes | None, reason: str) -> None:
    with pytest.raises(codec.EventDecodeError) as caught:
        codec.decode(raw)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_a_newer_schema_version_than_understood_is_refused_not_guessed() -> None:
    wire = json.loads(codec.encode(purchase()))
    wire["schema_version"] = 2
    with pytest.raises(codec.EventDecodeError) as caught:
        codec.decode(json.dumps(wire).encode())
    assert caught.value.reason == "unsupported_schema_version"


def test_invalid_payload_error_names_the_field() -> None:
    wire = json.loads(codec.encode(purchase()))
    wire["payload"]["lines"][0]["quantity"] = 0
    with pytest.raises(codec.EventDecodeError) as caught:
        codec.decode(json.dumps(wire).encode())
    assert "payload.lines.0.quantity" in caught.value.detail


# --- generated schemas ------------------------------------------------------------------------


def test_checked_in_schemas_are_up_to_date() -> None:
    assert stale_files() == [], "run `socialproof contracts generate` and commit contracts/schemas"


def test_checked_in_schemas_are_compatible_with_the_models() -> None:
    problems = {}
    for name, text in expected_files().items():
        path = SCHEMA_DIR / name
        if path.exists():
            found = incompatibilities(json.loads(path.read_text()), json.loads(text))
            if found:
                problems[name] = found
    assert problems == {}


def test_schemas_validate_real_events_so_other_languages_can_rely_on_them() -> None:
    for cls in ev.EVENT_TYPES.values():
        schema = json.loads((SCHEMA_DIR / f"{cls.EVENT_TYPE}.v{cls.SCHEMA_VERSION}.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
    schema = json.loads((SCHEMA_DIR / "purchase.completed.v1.json").read_text())
    jsonschema.validate(json.loads(codec.encode(purchase())), schema)
    bad = json.loads(codec.encode(purchase()))
    bad["payload"]["lines"][0]["quantity"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.fixture
def base_schema() -> dict:
    return json.loads((SCHEMA_DIR / "purchase.completed.v1.json").read_text())


def _payload_def(schema: dict) -> dict:
    return schema["$defs"]["PurchaseCompletedPayload"]


def test_compatibility_allows_a_new_optional_field(base_schema: dict) -> None:
    new = copy.deepcopy(base_schema)
    _payload_def(new)["properties"]["gift_wrap"] = {"type": "string"}
    assert incompatibilities(base_schema, new) == []


def test_compatibility_flags_a_removed_field(base_schema: dict) -> None:
    new = copy.deepcopy(base_schema)
    del _payload_def(new)["properties"]["currency"]
    assert incompatibilities(base_schema, new) == ["payload.currency: removed"]


def test_compatibility_flags_a_new_required_field(base_schema: dict) -> None:
    new = copy.deepcopy(base_schema)
    _payload_def(new)["properties"]["gift_wrap"] = {"type": "string"}
    _payload_def(new)["required"].append("gift_wrap")
    assert incompatibilities(base_schema, new) == ["payload.gift_wrap: became required"]


def test_compatibility_flags_a_changed_type_deep_inside_a_list(base_schema: dict) -> None:
    new = copy.deepcopy(base_schema)
    new["$defs"]["OrderLine"]["properties"]["quantity"] = {"type": "string"}
    assert incompatibilities(base_schema, new) == ["payload.lines[].quantity: type or constraints changed"]


# --- topic registry ---------------------------------------------------------------------------


def test_every_event_type_has_exactly_one_topic() -> None:
    for cls in ev.EVENT_TYPES.values():
        carriers = [t.name for t in EVENT_TOPICS if cls in t.value_types]
        assert len(carriers) == 1, f"{cls.EVENT_TYPE} is carried by {carriers}"


def test_each_topic_has_one_writer_and_a_sane_configuration() -> None:
    assert len(BY_NAME) == len(ALL_TOPICS)
    for topic in ALL_TOPICS:
        assert topic.writer
        assert topic.partitions >= 1
        assert topic.config["cleanup.policy"] in ("delete", "compact")
        assert int(topic.config["retention.ms"]) == -1 or int(topic.config["retention.ms"]) > 0


def test_record_keys_come_from_the_registry() -> None:
    assert topic_for(purchase()) is ORDERS
    assert ORDERS.key_of(purchase()) == "o1"
    a_to_b = ev.FriendshipAdded.create({"user_id": "b", "friend_id": "a"}, producer="social")
    b_to_a = ev.FriendshipRemoved.create({"user_id": "a", "friend_id": "b"}, producer="social")
    assert topic_for(a_to_b).key_of(a_to_b) == topic_for(b_to_a).key_of(b_to_a) == "a|b"
