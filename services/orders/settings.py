"""The orders service's settings on top of the shared ones."""

from __future__ import annotations

from pydantic import Field

from socialproof.settings import Settings, port_field


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
