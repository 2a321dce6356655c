"""``POST /v1/orders/{order_id}/refunds``: refund a whole order or some quantities
(``order.refunded``), checked against what is left to refund; ``Idempotency-Key`` makes retries
safe (:func:`socialproof.idempotency.idempotent`)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from contracts.events import OrderRefunded, OrderRefundedPayload, RefundLine
from services.orders.api.deps import (
    SERVICE,
    Book,
    OrderLock,
    RefundRecords,
    existing,
    unprocessable,
)
from services.orders.book import OrderState, Refund
from services.orders.schemas import CONFLICT, NOT_FOUND, OrderId, RefundIn, RefundOut, refund_out
from socialproof.deps import Publisher, View
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, FieldError, ServiceAuth
from socialproof.idempotency import IdempotencyKey, idempotent

log = logging.getLogger("socialproof.orders")
router = APIRouter(tags=["orders"])


@router.post(
    "/v1/orders/{order_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    summary="Refund the whole order (no lines) or some quantities per line",
    responses={**NOT_FOUND, **CONFLICT, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def refund(
    order_id: OrderId,
    body: RefundIn,
    _: ServiceAuth,
    book: Book,
    view: View,
    publisher: Publisher,
    lock: OrderLock,
    records: RefundRecords,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def order_exists() -> None:
        existing(book, order_id)

    async def publish(ids: dict[str, Any]) -> dict[str, Any]:
        async with lock:
            order = existing(book, order_id)
            done = order.refunds.get(ids["refund_id"])
            if done is None:  # (else a retry whose first attempt did reach the broker)
                event = OrderRefunded.create(
                    OrderRefundedPayload(
                        refund_id=ids["refund_id"],
                        order_id=order_id,
                        user_id=order.user_id,
                        lines=refund_lines(order, body),
                        reason=body.reason,
                    ),
                    producer=SERVICE,
                    event_id=uuid.UUID(ids["event_id"]),
                )
                await view.wait_delivered(await publisher.publish(event))
                log.info(
                    "order refunded",
                    extra={"event_id": str(event.event_id), "order_id": order_id},
                )
                done = order.refunds.get(ids["refund_id"]) or Refund(
                    event.payload, event.event_id, event.occurred_at
                )
        return refund_out(done).model_dump(mode="json")

    return await idempotent(
        records,
        idempotency_key,
        {"order_id": order_id, **body.model_dump(mode="json")},
        check=order_exists,
        new_ids=lambda: {"refund_id": f"r-{uuid.uuid4().hex}", "event_id": str(uuid.uuid4())},
        publish=publish,
    )


def refund_lines(order: OrderState, body: RefundIn) -> list[RefundLine]:
    """The lines of a refund, checked against what is left to refund (409 when exceeded)."""
    if order.cancelled:
        raise ApiError(409, "order_cancelled", f"order {order.order_id} is cancelled")
    if body.lines is None:
        lines = [
            RefundLine(product_id=p, quantity=order.refundable(p))
            for p in order.product_ids
            if order.refundable(p) > 0
        ]
        if not lines:
            raise ApiError(409, "nothing_to_refund", f"order {order.order_id} is fully refunded")
        return lines
    errors, over = [], []
    seen: set[str] = set()
    for i, line in enumerate(body.lines):
        field = f"lines[{i}].product_id"
        if line.product_id in seen:
            errors.append(
                FieldError(field=field, message="product listed twice", type="duplicate_product")
            )
        elif order.bought(line.product_id) == 0:
            errors.append(
                FieldError(
                    field=field,
                    message=f"product {line.product_id} is not in the order",
                    type="not_in_order",
                )
            )
        elif line.quantity > order.refundable(line.product_id):
            over.append(
                FieldError(
                    field=f"lines[{i}].quantity",
                    message=f"only {order.refundable(line.product_id)} of {order.bought(line.product_id)} left to refund",
                    type="exceeds_purchase",
                )
            )
        seen.add(line.product_id)
    if errors:
        raise unprocessable(f"invalid refund: {errors[0].message}", errors)
    if over:
        raise ApiError(
            409,
            "refund_exceeds_purchase",
            f"refunding more than was bought: {over[0].message}",
            fields=over,
        )
    return [RefundLine(product_id=x.product_id, quantity=x.quantity) for x in body.lines]
