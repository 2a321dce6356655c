"""The stream worker's settings (``SOCIALPROOF_WORKER_*``): batches, consumer group, fan-out,
health port; and ``SOCIALPROOF_COUPON_SECRET``, the key of reward coupons."""

from __future__ import annotations

from pydantic import Field, SecretStr

from contracts.views import FRIENDS_FANOUT_AT
from socialproof.settings import PrivacyDefaults


class CountersSettings(PrivacyDefaults):
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
    coupon_secret: SecretStr | None = Field(
        default=None,
        description="key of the reward coupons the worker derives from reward ids (SP- and 16 hex "
        "of a keyed hash), so a coupon cannot be guessed from its reward; unset: the service "
        "token. Keep it stable: a rebuild recomputes every coupon with it",
    )

    def coupon_key(self) -> str:
        """The coupon secret, else the service token, else empty (coupons guessable: dev only)."""
        for secret in (self.coupon_secret, self.service_token):
            if secret is not None and secret.get_secret_value():
                return secret.get_secret_value()
        return ""
