"""The notifier's settings: read API cache, rate limits, viewer tokens, live updates, the demo,
and the widget's interaction beacons (issue #18)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from socialproof.settings import PrivacyDefaults, port_field


class NotifierSettings(PrivacyDefaults):
    notifier_port: int = port_field("notifier")  # type: ignore[assignment]
    notifier_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="notifier processes sharing the port (granian workers on one listening "
        "socket), each with its own cache and live connections; in Kubernetes keep 1 and scale "
        "replicas",
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
    reviews_verified_only: bool = Field(
        default=False,
        description="review count, average and histogram count only verified-purchase reviews "
        "(the verified figures are always given too)",
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
    # the demo storefront's questions and shares call the dev stack's social service there, its
    # buy buttons the orders service (dev only)
    social_port: int = port_field("social")  # type: ignore[assignment]
    orders_port: int = port_field("orders")  # type: ignore[assignment]
    demo_catalog_path: str = Field(
        default="",
        description="JSON file of the demo storefront's products and viewers (socialproof "
        "simulate --write-catalog writes it); empty: the bundled one, for the default seed",
    )
    # interaction beacons (issue #18, services/notifier/api/beacons.py)
    interaction_tracking: bool = Field(
        default=True,
        description="the shop's switch for badge interaction tracking: off, the widget sends no "
        "beacons and the notifier answers any with 204, publishing nothing",
    )
    beacon_rate_per_s: float = Field(
        default=2, gt=0, description="interaction beacons per second per visitor (sustained)"
    )
    beacon_burst: int = Field(
        default=20, ge=1, description="interaction beacons a visitor may send in a burst"
    )
    beacon_max_events: int = Field(
        default=50, ge=1, le=1000, description="events one interaction beacon may carry, at most"
    )
    beacon_max_bytes: int = Field(
        default=16384,
        ge=512,
        le=1024 * 1024,
        description="largest interaction beacon body, bytes (larger: 413)",
    )
