"""Settings shared by every socialproof process (each service adds its own in
``services/<name>/settings.py``), read from the environment with pydantic-settings.

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
