"""``POST /v1/orders/{order_id}/cancel``: cancel a whole order (``order.cancelled``; counters treat
it as a full refund). Repeating it publishes nothing and answers the same."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from contracts.events import OrderCancelled, OrderCancelledPayload
from services.orders.api.deps import SERVICE, Book, OrderLock, existing
from services.orders.schemas import CONFLICT, NOT_FOUND, CancelIn, OrderId, OrderView
from socialproof.deps import Publisher, View
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, ServiceAuth

log = logging.getLogger("socialproof.orders")
router = APIRouter(tags=["orders"])


@router.post(
    "/v1/orders/{order_id}/cancel",
    response_model=OrderView,
    summary="Cancel the whole order (counters treat it as a full refund); repeating is harmless",
    responses={**NOT_FOUND, **CONFLICT, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def cancel(
    order_id: OrderId,
    _: ServiceAuth,
    book: Book,
    view: View,
    publisher: Publisher,
    lock: OrderLock,
    body: CancelIn | None = None,
) -> OrderView:
    async with lock:
        order = existing(book, order_id)
        if not order.cancelled:
            if order.status == "refunded":
                raise ApiError(409, "nothing_to_cancel", f"order {order_id} is fully refunded")
            event = OrderCancelled.create(
                OrderCancelledPayload(
                    order_id=order_id,
                    user_id=order.user_id,
                    reason=body.reason if body else None,
                ),
                producer=SERVICE,
            )
            await view.wait_delivered(await publisher.publish(event))
            log.info(
                "order cancelled",
                extra={"event_id": str(event.event_id), "order_id": order_id},
            )
        return OrderView.of(existing(book, order_id))
