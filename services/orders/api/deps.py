"""What the orders routes share: the service's state on ``app.state`` as FastAPI dependencies
(settings, the order book, its view, the publisher, the lock, Idempotency-Key records, the coupon
holds in Redis), the order lookup (404), the 422 helper, and waiting for the view to reach the
topics' end (:func:`caught_up`).

:func:`services.orders.app.create_app` puts ``settings``, ``book`` and ``order_lock`` on the state;
the lifespan adds ``publisher``, ``view`` and ``redis`` (a :class:`socialproof.http.ServingStore`:
one Redis or a Redis Cluster, whichever ``REDIS_URL`` names).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from services.orders.book import OrderBook, OrderState
from services.orders.coupons import CouponHolds
from services.orders.settings import OrdersSettings
from socialproof.deps import from_state
from socialproof.http import RETRY_AFTER_S, ApiError, FieldError
from socialproof.idempotency import Idempotency
from socialproof.topicview import TopicView, ViewUnavailable

SERVICE = "orders"


def idempotency_records(scope: str) -> Callable[[Request], Awaitable[Idempotency]]:
    async def records(request: Request) -> Idempotency:
        settings: OrdersSettings = request.app.state.settings
        redis = await request.app.state.redis.client()
        return Idempotency(redis, settings.redis_namespace, scope, settings.idempotency_ttl_s)

    return records


async def coupon_holds(request: Request) -> CouponHolds:
    settings: OrdersSettings = request.app.state.settings
    # a hold lives as long as a retry of its order may come (the Idempotency-Key's life)
    redis = await request.app.state.redis.client()
    return CouponHolds(redis, settings.redis_namespace, settings.idempotency_ttl_s)


Settings = Annotated[OrdersSettings, Depends(from_state("settings"))]
Book = Annotated[OrderBook, Depends(from_state("book"))]
#: refunds and cancellations check the order's state, then publish: one at a time per process
OrderLock = Annotated[asyncio.Lock, Depends(from_state("order_lock"))]
OrderRecords = Annotated[Idempotency, Depends(idempotency_records("orders"))]
RefundRecords = Annotated[Idempotency, Depends(idempotency_records("refunds"))]
Holds = Annotated[CouponHolds, Depends(coupon_holds)]


def existing(book: OrderBook, order_id: str) -> OrderState:
    order = book.get(order_id)
    if order is None:
        raise ApiError(404, "not_found", f"no order {order_id}")
    return order


def unprocessable(message: str, fields: list[FieldError]) -> ApiError:
    return ApiError(422, "validation_failed", message, fields=fields)


async def caught_up(view: TopicView, wait_s: float, what: str) -> None:
    """Wait (at most ``wait_s``) until the view applied everything written so far: a product or a
    reward may have been published a moment ago. 503 when the broker cannot tell (``what``: the
    consequence and what to do, e.g. "the products cannot be checked; …")."""
    try:
        await view.sync(wait_s)
    except ViewUnavailable as exc:
        raise ApiError(
            503,
            "broker_unavailable",
            f"the event broker does not answer, so {what}",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
