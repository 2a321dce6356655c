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
from socialproof.http import ApiError, FieldError
from socialproof.idempotency import Idempotency
from socialproof.kafka import EventPublisher
from socialproof.topicview import TopicView

SERVICE = "orders"


async def get_settings(request: Request) -> OrdersSettings:
    return request.app.state.settings


async def get_book(request: Request) -> OrderBook:
    return request.app.state.book


async def get_view(request: Request) -> TopicView:
    return request.app.state.view


async def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


async def get_order_lock(request: Request) -> asyncio.Lock:
    """Refunds and cancellations check the order's state, then publish: one at a time per
    process."""
    return request.app.state.order_lock


def idempotency_records(scope: str) -> Callable[[Request], Awaitable[Idempotency]]:
    async def records(request: Request) -> Idempotency:
        settings: OrdersSettings = request.app.state.settings
        return Idempotency(
            request.app.state.redis, settings.redis_namespace, scope, settings.idempotency_ttl_s
        )

    return records


Settings = Annotated[OrdersSettings, Depends(get_settings)]
Book = Annotated[OrderBook, Depends(get_book)]
View = Annotated[TopicView, Depends(get_view)]
Publisher = Annotated[EventPublisher, Depends(get_publisher)]
OrderLock = Annotated[asyncio.Lock, Depends(get_order_lock)]
OrderRecords = Annotated[Idempotency, Depends(idempotency_records("orders"))]
RefundRecords = Annotated[Idempotency, Depends(idempotency_records("refunds"))]


def existing(book: OrderBook, order_id: str) -> OrderState:
    order = book.get(order_id)
    if order is None:
        raise ApiError(404, "not_found", f"no order {order_id}")
    return order


def unprocessable(message: str, fields: list[FieldError]) -> ApiError:
    return ApiError(422, "validation_failed", message, fields=fields)
