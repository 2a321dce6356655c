"""``POST /v1/orders`` (place an order: ``purchase.completed``) and ``GET /v1/orders/{order_id}``.

An order is checked (one line per product; every product known and active, waiting for the
product view when one is not there yet; its coupon redeemable, :mod:`.coupons`), then published;
``Idempotency-Key`` makes retries safe (:func:`socialproof.idempotency.idempotent`). The order's
``referral`` (a share's link token: its format is checked, not whether a share made it, which the
stream processor's attribution decides), its coupon and discount, and its ``visitor_id`` (the
storefront widget's pseudonymous visitor id, for badge experiments' attribution; format checked
only) travel on the event.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.events import OrderLine as OrderLineEvent
from contracts.events import PurchaseCompleted, PurchaseCompletedPayload
from services.orders.api.coupons import Redemption, coupon_problems
from services.orders.api.deps import (
    SERVICE,
    Book,
    Holds,
    OrderRecords,
    Settings,
    caught_up,
    existing,
    unprocessable,
)
from services.orders.book import OrderBook
from services.orders.schemas import (
    NOT_FOUND,
    ORDER_CONFLICT,
    OrderAccepted,
    OrderId,
    OrderIn,
    OrderLineOut,
    OrderView,
)
from socialproof.deps import Publisher, View
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, FieldError, ServiceAuth
from socialproof.idempotency import IdempotencyKey, idempotent
from socialproof.kafka import Delivered
from socialproof.topicview import TopicView

log = logging.getLogger("socialproof.orders")
router = APIRouter(tags=["orders"])


@router.post(
    "/v1/orders",
    status_code=201,
    response_model=OrderAccepted,
    summary="Place an order; 201 once the broker confirmed the purchase event",
    responses={**ORDER_CONFLICT, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def place_order(
    order: OrderIn,
    _: ServiceAuth,
    settings: Settings,
    book: Book,
    view: View,
    publisher: Publisher,
    records: OrderRecords,
    holds: Holds,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    refuse_duplicate_products(order)
    sent: list[Delivered] = []
    redemption = Redemption(order, book, holds)
    subtotal = sum((x.unit_price * x.quantity for x in order.lines), Decimal(0))

    async def publish(ids: dict[str, Any]) -> dict[str, Any]:
        await redemption.hold(ids["order_id"])
        discount = redemption.discount(subtotal)
        event = PurchaseCompleted.create(
            PurchaseCompletedPayload(
                order_id=ids["order_id"],
                user_id=order.user_id,
                currency=order.currency,
                lines=[OrderLineEvent(**line.model_dump()) for line in order.lines],
                referral=order.referral,
                coupon=order.coupon,
                discount=discount,
                visitor_id=order.visitor_id,
            ),
            producer=SERVICE,
            event_id=uuid.UUID(ids["event_id"]),
            occurred_at=datetime.fromisoformat(ids["occurred_at"]),
        )
        try:
            delivered = await publisher.publish(event)
        except Exception:  # not accepted (503): the coupon is free again
            await redemption.release(ids["order_id"])
            raise
        sent.append(delivered)
        log.info(
            "order accepted",
            extra={
                "event_id": str(event.event_id),
                "order_id": ids["order_id"],
                "partition": delivered.partition,
                "offset": delivered.offset,
            },
        )
        return OrderAccepted(
            order_id=ids["order_id"],
            status="accepted",
            user_id=order.user_id,
            currency=order.currency,
            lines=[
                OrderLineOut(
                    product_id=x.product_id,
                    quantity=x.quantity,
                    unit_price=format(x.unit_price, "f"),
                )
                for x in order.lines
            ],
            subtotal=format(subtotal, "f"),
            discount=None if discount is None else format(discount, "f"),
            total=format(subtotal - (discount or Decimal(0)), "f"),
            referral=order.referral,
            coupon=order.coupon,
            visitor_id=order.visitor_id,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
        ).model_dump(mode="json")

    response = await idempotent(
        records,
        idempotency_key,
        # (exclude_none: a body without referral and coupon fingerprints as before they existed)
        order.model_dump(mode="json", exclude_none=True),
        check=lambda: check_order(order, book, view, settings.product_wait_s),
        new_ids=lambda: {
            "order_id": f"o-{uuid.uuid4().hex}",
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
        },
        publish=publish,
    )
    for delivered in sent:  # (none on a replay) the answer is stored; now read-your-writes
        await view.wait_delivered(delivered)
    return response


@router.get(
    "/v1/orders/{order_id}",
    response_model=OrderView,
    summary="An order with its refunds and status",
    responses={**NOT_FOUND, **AUTH_RESPONSES},
)
async def get_order(order_id: OrderId, _: ServiceAuth, book: Book) -> OrderView:
    return OrderView.of(existing(book, order_id))


def refuse_duplicate_products(order: OrderIn) -> None:
    """422 when two lines name the same product."""
    seen: dict[str, int] = {}
    for i, line in enumerate(order.lines):
        if line.product_id in seen:
            raise unprocessable(
                f"product {line.product_id} appears on two lines",
                [
                    FieldError(
                        field=f"lines[{i}].product_id",
                        message=f"same product as lines[{seen[line.product_id]}]; use one line with the total quantity",
                        type="duplicate_product",
                    )
                ],
            )
        seen[line.product_id] = i


async def check_order(order: OrderIn, book: OrderBook, view: TopicView, wait_s: float) -> None:
    """422 unless every product is known and active and the coupon (if any) is redeemable by the
    order's user; 503 when the broker cannot tell."""

    def problems() -> list[FieldError]:
        return product_problems(order, book) + coupon_problems(order, book)

    if problems():
        # The product or reward may have been published a moment ago: let the view reach the end.
        await caught_up(
            view,
            wait_s,
            "the products and coupon cannot be checked; nothing was accepted: retry with the same "
            "Idempotency-Key",
        )
    if found := problems():
        raise unprocessable(f"cannot order: {found[0].message}", found)


def product_problems(order: OrderIn, book: OrderBook) -> list[FieldError]:
    """Lines naming an unknown or inactive product."""
    found = []
    for i, line in enumerate(order.lines):
        product = book.products.get(line.product_id)
        if product is None:
            found.append(
                FieldError(
                    field=f"lines[{i}].product_id",
                    message=f"unknown product {line.product_id}",
                    type="unknown_product",
                )
            )
        elif not product.active:
            found.append(
                FieldError(
                    field=f"lines[{i}].product_id",
                    message=f"product {line.product_id} is not active",
                    type="inactive_product",
                )
            )
    return found
