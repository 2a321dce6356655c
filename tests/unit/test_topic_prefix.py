"""SOCIALPROOF_KAFKA_TOPIC_PREFIX: one function names every registry topic on the broker, bad
prefixes stop the process naming the setting, and the bench's choice of backend."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bench.env import (
    EMBEDDED,
    BenchConfigError,
    describe_backend,
    existing_servers,
    redis_url_for_display,
)
from contracts.topics import ALL_TOPICS, DEAD_LETTERS, ORDERS, PRODUCTS
from services.counters.settings import CountersSettings
from socialproof.kafka import registry_topic, topic_name
from socialproof.settings import Settings


def test_without_a_prefix_topics_carry_their_registry_names() -> None:
    settings = Settings()
    assert settings.kafka_topic_prefix == ""
    assert [topic_name(settings, t) for t in ALL_TOPICS] == [t.name for t in ALL_TOPICS]


def test_a_prefix_goes_before_every_registry_name_and_maps_back() -> None:
    settings = CountersSettings(kafka_topic_prefix="staging.")
    assert topic_name(settings, ORDERS) == "staging.orders.events"
    assert topic_name(settings, DEAD_LETTERS) == "staging.socialproof.deadletter"
    for topic in ALL_TOPICS:
        assert registry_topic(settings, topic_name(settings, topic)) is topic
    # another environment's topics (or unprefixed ones) are not this deployment's registry topics
    assert registry_topic(settings, "orders.events") is None
    assert registry_topic(settings, "prod.catalog.products") is None
    assert registry_topic(settings, "staging.something-else") is None
    assert registry_topic(Settings(), PRODUCTS.name) is PRODUCTS


def test_the_prefix_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIALPROOF_KAFKA_TOPIC_PREFIX", "bench-1a2b_C.")
    assert topic_name(Settings(), ORDERS) == "bench-1a2b_C.orders.events"


@pytest.mark.parametrize("prefix", ["staging/", "a b.", "ünï.", "x" * 201, "p\n"])
def test_a_prefix_kafka_would_refuse_stops_the_process_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("SOCIALPROOF_KAFKA_TOPIC_PREFIX", prefix)
    with pytest.raises(ValidationError) as caught:
        Settings()
    error = caught.value.errors()[0]
    assert error["loc"] == ("kafka_topic_prefix",)
    assert "SOCIALPROOF_KAFKA_TOPIC_PREFIX" in error["msg"]
    assert "letters, digits, '.', '_' and '-'" in error["msg"]


def test_the_bench_uses_existing_servers_only_when_both_are_given() -> None:
    assert existing_servers({}) is None
    assert existing_servers({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "REDIS_URL": "redis://r/0"}) == (
        "k:9092",
        "redis://r/0",
    )
    with pytest.raises(
        BenchConfigError, match="KAFKA_BOOTSTRAP_SERVERS is set but REDIS_URL is not"
    ):
        existing_servers({"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    with pytest.raises(
        BenchConfigError, match="REDIS_URL is set but KAFKA_BOOTSTRAP_SERVERS is not"
    ):
        existing_servers({"REDIS_URL": "redis://r/0", "KAFKA_BOOTSTRAP_SERVERS": " "})


def test_the_report_names_the_backend_without_the_redis_password() -> None:
    assert describe_backend(None) == EMBEDDED
    described = describe_backend(("k1:9092,k2:9092", "rediss://app:s3cret@r.example:6380/2"))
    assert described == "existing servers: k1:9092,k2:9092, rediss://app@r.example:6380/2"
    assert redis_url_for_display("redis://:pw@host/0?password=pw") == "redis://host/0"
    assert redis_url_for_display("unix:///r.sock?db=2&password=pw") == "unix:/r.sock?db=2"
