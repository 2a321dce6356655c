"""The orders service's requests and answers: the JSON bodies of :mod:`services.orders.api`, with
their validation (pydantic) and the examples and error responses its OpenAPI document shows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import CouponCode, Identifier, LinkToken, RewardSpec, VisitorId
from services.orders.book import OrderState, Refund
from services.orders.coupons import Coupon, CouponStatus
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
                },
                {
                    "user_id": "u2",
                    "currency": "EUR",
                    "lines": [{"product_id": "p1", "quantity": 1, "unit_price": "19.99"}],
                    "referral": "lk-k7q2m5x3vd4ra6hn2tb7wczp4e",
                    "coupon": "SP-3F9A0C41D27B5E86",
                    "visitor_id": "Vq3xT0b9R2mK8cLp5ZyW1a",
                },
            ]
        },
    )
    user_id: Identifier
    currency: IsoCurrency
    lines: list[OrderLineIn] = Field(min_length=1, max_length=100)
    referral: LinkToken | None = Field(
        default=None,
        description="the `link_token` of the share the buyer arrived through (the storefront's "
        "`?ref=`); carried on the purchase event, the stream processor credits the sharer. An "
        "unknown token attributes nothing",
    )
    coupon: CouponCode | None = Field(
        default=None,
        description="a reward coupon of this user to redeem on the order (single use): its "
        "discount comes off the total",
    )
    visitor_id: VisitorId | None = Field(
        default=None,
        description="the storefront's pseudonymous visitor id (the widget's "
        "`SocialProof.visitorId()`, 8-64 of A-Z a-z 0-9 _ -); carried on the purchase event so "
        "that the stream processor can attribute the purchase to the badge variant this visitor "
        "saw. Absent: attributed by the user id alone",
        examples=["Vq3xT0b9R2mK8cLp5ZyW1a"],
    )


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
    "subtotal": "39.98",
    "discount": None,
    "total": "39.98",
    "referral": None,
    "coupon": None,
    "visitor_id": None,
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
    subtotal: MoneyOut = Field(description="the lines' sum")
    discount: MoneyOut | None = Field(description="what the coupon took off (none: null)")
    total: MoneyOut = Field(description="what the buyer pays: subtotal less the discount")
    referral: str | None = Field(description="the share link token the order came through")
    coupon: str | None = Field(description="the coupon redeemed on the order")
    visitor_id: str | None = Field(
        default=None, description="the storefront visitor id the order came with"
    )
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
                    **{
                        k: ORDER_EXAMPLE[k]
                        for k in (
                            "order_id",
                            "user_id",
                            "currency",
                            "subtotal",
                            "discount",
                            "total",
                            "referral",
                            "coupon",
                            "visitor_id",
                        )
                    },
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
    subtotal: MoneyOut
    discount: MoneyOut | None
    total: MoneyOut
    referral: str | None
    coupon: str | None
    visitor_id: str | None = None
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
            subtotal=format(o.subtotal, "f"),
            discount=None if o.discount is None else format(o.discount, "f"),
            total=format(o.total, "f"),
            referral=o.referral,
            coupon=o.coupon,
            visitor_id=o.visitor_id,
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


class CouponOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "coupon": "SP-3F9A0C41D27B5E86",
                    "reward_id": "rw-5d1c0e7a9b3f2a4c6e8d0b1a",
                    "promotion_id": "promo-1",
                    "role": "sharer",
                    "user_id": "u-ana",
                    "reward": {"kind": "percent", "value": "10", "currency": None},
                    "status": "redeemed",
                    "order_id": "o-3f0c9a",
                }
            ]
        }
    )

    coupon: str
    reward_id: str
    promotion_id: str
    role: str = Field(description="sharer or buyer")
    user_id: str = Field(description="who may redeem it")
    reward: RewardSpec
    status: CouponStatus = Field(
        description="earned (redeemable), withdrawn (the purchases behind it were refunded, a "
        "user erased, the promotion changed) or redeemed (final)"
    )
    order_id: str | None = Field(description="the order that redeemed it")

    @classmethod
    def of(cls, c: Coupon) -> CouponOut:
        return cls(
            coupon=c.coupon,
            reward_id=c.reward_id,
            promotion_id=c.promotion_id,
            role=c.role,
            user_id=c.user_id,
            reward=c.reward,
            status=c.status,
            order_id=c.order_id,
        )


# --- path parameters and documented errors ------------------------------------------------------

OrderId = Annotated[Identifier, Path(description="order id", examples=["o-3f0c9a"])]
CouponId = Annotated[CouponCode, Path(description="coupon code", examples=["SP-3F9A0C41D27B5E86"])]
NOT_FOUND_COUPON = {404: {"model": ErrorBody, "description": "no such coupon"}}
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such order"}}
CONFLICT = {
    409: {
        "model": ErrorBody,
        "description": "the Idempotency-Key was used with another body, or the order's state "
        "forbids it (more refunded than bought, cancelled)",
    }
}
ORDER_CONFLICT = {
    409: {
        "model": ErrorBody,
        "description": "the Idempotency-Key was used with another body, or the coupon is being "
        "redeemed by another order right now (`coupon_in_use`)",
    }
}
