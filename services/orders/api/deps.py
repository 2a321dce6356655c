"""What the orders routes share: the service's state on ``app.state`` as FastAPI dependencies
(settings, the order book, its view, the publisher, the lock, Idempotency-Key records), the order
lookup (404) and the 422 helper.

:func:`services.orders.app.create_app` puts ``settings``, ``book`` and ``order_lock`` on the state;
the lifespan adds ``publisher``, ``view`` and ``redis``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from services.orders.book import OrderBook, OrderState
from services.orders.settings import OrdersSettings
from socialproof.deps import from_state
from socialproof.http import ApiError, FieldError
from socialproof.idempotency import Idempotency

SERVICE = "orders"


def idempotency_records(scope: str) -> Callable[[Request], Awaitable[Idempotency]]:
    async def records(request: Request) -> Idempotency:
        settings: OrdersSettings = request.app.state.settings
        return Idempotency(
            request.app.state.redis, settings.redis_namespace, scope, settings.idempotency_ttl_s
        )

    return records


Settings = Annotated[OrdersSettings, Depends(from_state("settings"))]
Book = Annotated[OrderBook, Depends(from_state("book"))]
#: refunds and cancellations check the order's state, then publish: one at a time per process
OrderLock = Annotated[asyncio.Lock, Depends(from_state("order_lock"))]
OrderRecords = Annotated[Idempotency, Depends(idempotency_records("orders"))]
RefundRecords = Annotated[Idempotency, Depends(idempotency_records("refunds"))]


def existing(book: OrderBook, order_id: str) -> OrderState:
    order = book.get(order_id)
    if order is None:
        raise ApiError(404, "not_found", f"no order {order_id}")
    return order


def unprocessable(message: str, fields: list[FieldError]) -> ApiError:
    return ApiError(422, "validation_failed", message, fields=fields)
