"""Settings shared by every socialproof process, read from the environment with pydantic-settings.

Three names are fixed by the product's interface and have no prefix: ``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL`` and ``SOCIALPROOF_SERVICE_TOKEN``. Everything else is ``SOCIALPROOF_<FIELD>``
(e.g. ``SOCIALPROOF_ORDERS_PORT``). ``socialproof settings`` prints the table with defaults.
Invalid values fail at start-up with the variable's name, never later.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.views import FRIENDS_FANOUT_AT

#: default HTTP ports, one per service (also the dev stack's defaults)
DEFAULT_PORTS = {"catalog": 8001, "orders": 8002, "social": 8003, "notifier": 8004}


class Settings(BaseSettings):
    """What every process needs: where Kafka and Redis are, how to log, the service token."""

    model_config = SettingsConfigDict(
        env_prefix="SOCIALPROOF_", extra="ignore", populate_by_name=True, frozen=True
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Kafka bootstrap servers, host:port[,host:port…]",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6390/0",
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="Redis URL of the serving store",
    )
    service_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SOCIALPROOF_SERVICE_TOKEN", "service_token"),
        description="bearer token that write APIs require (make run generates one)",
    )
    redis_namespace: str = Field(
        default="sp",
        pattern=r"^[a-z0-9_-]{1,32}$",
        description="prefix of every Redis key socialproof writes",
    )
    kafka_topic_prefix: str = Field(
        default="",
        description="put before every registry topic name on the broker (e.g. `staging.`), so "
        "several environments share one Kafka cluster; empty: the registry's names",
    )
    kafka_session_timeout_ms: int = Field(
        default=45_000, ge=1_000, le=300_000, description="consumer group session timeout"
    )
    kafka_heartbeat_interval_ms: int = Field(
        default=3_000, ge=100, le=60_000, description="consumer group heartbeat interval"
    )
    produce_timeout_ms: int = Field(
        default=5_000,
        ge=500,
        le=300_000,
        description="how long a publish may wait for the broker before the request fails (503)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = Field(
        default="json", description="json for machines, console for people (the dev stack)"
    )
    host: str = Field(default="127.0.0.1", description="address the HTTP services bind to")
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="largest accepted request body"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {server!r}")
        return value

    @field_validator("kafka_topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        # Kafka topic names: ASCII letters, digits, '.', '_', '-', at most 249 characters; the
        # longest registry name is 22, so 200 leaves room for any topic the registry gains.
        if not re.fullmatch(r"[A-Za-z0-9._-]{0,200}", value):
            raise ValueError(
                "SOCIALPROOF_KAFKA_TOPIC_PREFIX may contain only ASCII letters, digits, '.', "
                f"'_' and '-' (the characters of Kafka topic names), at most 200; got {value!r}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def require_service_token(self) -> str:
        """The service token, or a clear start-up error when it is not configured."""
        if self.service_token is None or not self.service_token.get_secret_value():
            raise SystemExit(
                "SOCIALPROOF_SERVICE_TOKEN is not set: write APIs need a service token. "
                "Set it (at least 16 characters), or use `make run`, which generates one."
            )
        token = self.service_token.get_secret_value()
        if len(token) < 16:
            raise SystemExit("SOCIALPROOF_SERVICE_TOKEN must be at least 16 characters long.")
        return token


def port_field(service: str) -> object:
    return Field(
        default=DEFAULT_PORTS[service],
        ge=1,
        le=65535,
        description=f"HTTP port of the {service} service",
    )


class CatalogSettings(Settings):
    catalog_port: int = port_field("catalog")  # type: ignore[assignment]


class OrdersSettings(Settings):
    orders_port: int = port_field("orders")  # type: ignore[assignment]
    product_wait_s: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="how long an order waits for a just-created product to reach the product view",
    )
    idempotency_ttl_s: int = Field(
        default=86_400, ge=60, le=30 * 86_400, description="how long Idempotency-Key records live"
    )


class PrivacyDefaults(Settings):
    """The shop's privacy defaults, read by every part that applies consent (social service,
    stream worker, notifier): they must agree, so they are one definition."""

    # Privacy by default: nobody's purchases are shown to friends and nobody appears in activity
    # feeds until they opt in, unless the shop's configuration says otherwise.
    default_share_purchases: bool = Field(
        default=False, description="share_purchases_with_friends of users who never chose"
    )
    default_show_in_activity_feed: bool = Field(
        default=False, description="show_in_activity_feed of users who never chose"
    )


class SocialSettings(PrivacyDefaults):
    social_port: int = port_field("social")  # type: ignore[assignment]
    worker_batch_size: int = Field(
        default=5000, ge=1, le=100_000, description="most events the worker takes per batch"
    )
    worker_batch_within_s: float = Field(
        default=0.05, gt=0, le=10, description="longest wait to fill a batch, seconds"
    )
    worker_friends_fanout_at: int = Field(
        default=FRIENDS_FANOUT_AT,
        ge=0,
        le=1_000_000,
        description="friendships on record from which a viewer's friends_bought is kept by the "
        "worker (fan-out on write: reads cost the same whatever the sizes, each purchase adds a "
        "set member per such friend) instead of intersected on read; 0: always intersect",
    )
    worker_consumer_group: str = Field(
        default="socialproof-processor", description="consumer group (Faust app id) of the worker"
    )
    worker_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="longest a worker's fetch waits for records (Kafka answers as soon as "
        "there are any, so this only bounds an idle worker's round trips)",
    )
    worker_follow_active: bool = Field(
        default=True,
        description="write the namespace `replay rebuild --switch` made active (and its shadow "
        "during a hand-over); false only for a rebuild's own replay worker",
    )
    worker_web_port: int = Field(
        default=6066, ge=1, le=65535, description="the worker's health and metrics port"
    )


class NotifierSettings(PrivacyDefaults):
    notifier_port: int = port_field("notifier")  # type: ignore[assignment]
    notifier_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="notifier processes sharing the port (SO_REUSEPORT), each with its own cache "
        "and live connections; in Kubernetes keep 1 and scale replicas",
    )
    sse_heartbeat_s: float = Field(default=15, gt=0, le=300, description="SSE keep-alive period")
    viewer_token_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of viewer tokens; unset: derived from the service token",
    )
    viewer_token_ttl_s: int = Field(
        default=900, ge=30, le=86_400, description="lifetime of a viewer token, seconds"
    )
    rate_limit_per_s: float = Field(
        default=20, gt=0, description="public read requests per second per client (sustained)"
    )
    rate_limit_burst: int = Field(
        default=100, ge=1, description="public read requests a client may make in a burst"
    )
    stream_max_updates_per_s: float = Field(
        default=4, gt=0, le=100, description="live updates per product per connection, at most"
    )
    public_max_age_s: int = Field(
        default=2, ge=0, le=3600, description="Cache-Control max-age of public proof answers"
    )
    proof_cache_max_age_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="longest a cached read API answer is served (time windows expire without "
        "events); 0: no cache",
    )
    proof_cache_max_entries: int = Field(
        default=100_000, ge=1, description="read API answers cached per notifier process, at most"
    )
    widget_min_count: int = Field(
        default=3, ge=1, description="widget hides counts below this (data-min-count overrides)"
    )
    cors_origins: str = Field(
        default="*", description="origins allowed to call the read API from a browser, comma-separated"
    )
    demo_enabled: bool = Field(
        default=False,
        description="serve the demo storefront and issue viewer tokens without auth (dev only)",
    )
    demo_seed: int = Field(
        default=42, description="seed of the demo world (socialproof simulate --seed uses it too)"
    )


class DevStackSettings(BaseSettings):
    """Only for ``make run`` / ``socialproof run``: where the embedded parts listen."""

    model_config = SettingsConfigDict(env_prefix="SOCIALPROOF_", extra="ignore", frozen=True)

    broker_port: int = Field(default=9092, ge=1, le=65535, description="embedded broker port")
    redis_port: int = Field(default=6390, ge=1, le=65535, description="dev redis-server port")
    devstack_dir: str = Field(default=".devstack", description="dev stack data and log folder")
