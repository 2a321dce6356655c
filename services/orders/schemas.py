"""The orders service's requests and answers: the JSON bodies of :mod:`services.orders.api`, with
their validation (pydantic) and the examples and error responses its OpenAPI document shows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier
from services.orders.book import OrderState, Refund
from socialproof.http import ErrorBody
from socialproof.money import DecimalString, IsoCurrency

Quantity = Annotated[int, Field(ge=1, le=10_000, examples=[1])]
Reason = Annotated[str, Field(max_length=500, examples=["damaged in transit"])]


# --- requests -----------------------------------------------------------------------------------


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: Identifier
    quantity: Quantity
    unit_price: DecimalString


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
    currency: IsoCurrency
    lines: list[OrderLineIn] = Field(min_length=1, max_length=100)


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: Identifier
    quantity: Quantity


class RefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"lines": [{"product_id": "p1", "quantity": 1}], "reason": "damaged in transit"},
                {"reason": "customer changed their mind"},
            ]
        },
    )
    lines: list[RefundLineIn] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="what to refund; omitted: everything not refunded yet (the whole order)",
    )
    reason: Reason | None = None


class CancelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "payment failed"}]}
    )
    reason: Reason | None = None


# --- responses ----------------------------------------------------------------------------------

MoneyOut = Annotated[str, Field(description="decimal string", examples=["19.99"])]


class OrderLineOut(BaseModel):
    product_id: str
    quantity: int
    unit_price: MoneyOut


ORDER_EXAMPLE = {
    "order_id": "o-3f0c9a",
    "status": "accepted",
    "user_id": "u1",
    "currency": "EUR",
    "lines": [{"product_id": "p1", "quantity": 2, "unit_price": "19.99"}],
    "total": "39.98",
    "event_id": "5b0e8f1c-3a8e-4d5e-9a51-2f1de1f0c001",
    "occurred_at": "2026-11-24T10:00:00Z",
}
REFUND_EXAMPLE = {
    "refund_id": "r-8d2e",
    "order_id": "o-3f0c9a",
    "lines": [{"product_id": "p1", "quantity": 1}],
    "reason": "damaged in transit",
    "event_id": "0f6b7f2e-9c1d-4c61-8f0e-7b3d7f7a1c02",
    "occurred_at": "2026-11-24T11:00:00Z",
}


class OrderAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_EXAMPLE]})

    order_id: str
    status: str = Field(examples=["accepted"])
    user_id: str
    currency: str
    lines: list[OrderLineOut]
    total: MoneyOut
    event_id: uuid.UUID
    occurred_at: datetime


class RefundLineOut(BaseModel):
    product_id: str
    quantity: int


class RefundOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [REFUND_EXAMPLE]})

    refund_id: str
    order_id: str
    lines: list[RefundLineOut]
    reason: str | None
    event_id: uuid.UUID
    occurred_at: datetime


class OrderLineView(OrderLineOut):
    refunded_quantity: int = Field(description="refunded so far (all of it once cancelled)")


class OrderView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **{k: ORDER_EXAMPLE[k] for k in ("order_id", "user_id", "currency", "total")},
                    "status": "partially_refunded",
                    "lines": [{**ORDER_EXAMPLE["lines"][0], "refunded_quantity": 1}],
                    "occurred_at": ORDER_EXAMPLE["occurred_at"],
                    "refunds": [REFUND_EXAMPLE],
                    "cancelled_at": None,
                    "cancel_reason": None,
                }
            ]
        }
    )

    order_id: str
    user_id: str
    currency: str
    status: str = Field(
        description="accepted, partially_refunded, refunded or cancelled", examples=["accepted"]
    )
    lines: list[OrderLineView]
    total: MoneyOut
    occurred_at: datetime
    refunds: list[RefundOut]
    cancelled_at: datetime | None
    cancel_reason: str | None

    @classmethod
    def of(cls, o: OrderState) -> OrderView:
        return cls(
            order_id=o.order_id,
            user_id=o.user_id,
            currency=o.currency,
            status=o.status,
            lines=lines_with_refunds(o),
            total=format(o.total, "f"),
            occurred_at=o.occurred_at,
            refunds=[refund_out(r) for r in o.refunds.values()],
            cancelled_at=o.cancelled_at,
            cancel_reason=o.cancel_reason,
        )


def lines_with_refunds(o: OrderState) -> list[OrderLineView]:
    # product ids are unique within an order (checked when it was placed)
    return [
        OrderLineView(
            product_id=line.product_id,
            quantity=line.quantity,
            unit_price=format(line.unit_price, "f"),
            refunded_quantity=line.quantity
            if o.cancelled
            else min(line.quantity, o.refunded.get(line.product_id, 0)),
        )
        for line in o.lines
    ]


def refund_out(r: Refund) -> RefundOut:
    return RefundOut(
        refund_id=r.payload.refund_id,
        order_id=r.payload.order_id,
        lines=[
            RefundLineOut(product_id=x.product_id, quantity=x.quantity) for x in r.payload.lines
        ],
        reason=r.payload.reason,
        event_id=r.event_id,
        occurred_at=r.occurred_at,
    )


# --- path parameters and documented errors ------------------------------------------------------

OrderId = Annotated[Identifier, Path(description="order id", examples=["o-3f0c9a"])]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such order"}}
CONFLICT = {
    409: {
        "model": ErrorBody,
        "description": "the Idempotency-Key was used with another body, or the order's state "
        "forbids it (more refunded than bought, cancelled)",
    }
}
