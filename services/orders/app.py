"""The orders service: accepts orders and publishes them as ``purchase.completed`` events.

It is the only writer of the ``orders.events`` topic. An order is acknowledged (201) only after
the broker confirmed the event (``acks=all``, idempotent producer); if the broker does not confirm
in time the answer is 503 with ``Retry-After`` and nothing was accepted.

Run: ``socialproof serve orders`` (port ``SOCIALPROOF_ORDERS_PORT``, default 8002).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import (
    CurrencyCode,
    Identifier,
    Money,
    PurchaseCompleted,
    PurchaseCompletedPayload,
)
from contracts.events import OrderLine as OrderLineEvent
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ServiceAuth,
    create_service_app,
    standard_lifespan,
    standard_readiness,
)
from socialproof.kafka import EventPublisher
from socialproof.settings import OrdersSettings

SERVICE = "orders"
log = logging.getLogger("socialproof.orders")


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: Identifier
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money


class OrderIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u1",
                    "currency": "EUR",
                    "lines": [{"product_id": "p1", "quantity": 1, "unit_price": "19.99"}],
                }
            ]
        },
    )
    user_id: Identifier
    currency: CurrencyCode
    lines: list[OrderLineIn] = Field(min_length=1, max_length=100)


class OrderAccepted(BaseModel):
    order_id: str
    status: str = Field(examples=["accepted"])
    user_id: str
    currency: str
    lines: list[OrderLineIn]
    total: Decimal
    event_id: uuid.UUID
    occurred_at: datetime


def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


Publisher = Annotated[EventPublisher, Depends(get_publisher)]


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description="Orders and refunds. Publishes purchase events once the broker confirms.",
        lifespan=standard_lifespan(settings, SERVICE),
        readiness=standard_readiness,
    )

    @app.post(
        "/v1/orders",
        status_code=201,
        response_model=OrderAccepted,
        tags=["orders"],
        summary="Place an order; 201 once the broker confirmed the purchase event",
        responses={**AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def place_order(order: OrderIn, publisher: Publisher, _: ServiceAuth) -> OrderAccepted:
        order_id = f"o-{uuid.uuid4().hex}"
        event = PurchaseCompleted.create(
            PurchaseCompletedPayload(
                order_id=order_id,
                user_id=order.user_id,
                currency=order.currency,
                lines=[OrderLineEvent(**line.model_dump()) for line in order.lines],
            ),
            producer=SERVICE,
        )
        delivered = await publisher.publish(event)
        log.info(
            "order accepted",
            extra={
                "event_id": str(event.event_id),
                "order_id": order_id,
                "partition": delivered.partition,
                "offset": delivered.offset,
            },
        )
        return OrderAccepted(
            order_id=order_id,
            status="accepted",
            user_id=order.user_id,
            currency=order.currency,
            lines=order.lines,
            total=sum((line.unit_price * line.quantity for line in order.lines), Decimal(0)),
            event_id=event.event_id,
            occurred_at=event.occurred_at,
        )

    return app
