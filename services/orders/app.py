"""The orders service: orders, refunds and cancellations, published to ``orders.events``.

It is the only writer of that topic. An order is acknowledged (201) only after the broker confirmed
the ``purchase.completed`` event (``acks=all``, idempotent producer); if the broker does not
confirm in time the answer is 503 with ``Retry-After``: not accepted, although a write that timed
out may still reach the log (measured in the 3-broker fault tests: 13-78 such records through a
leader failover), so clients retry with the same ``Idempotency-Key``, which republishes the same
order (same id, same event id) and is counted once.

Its view (:mod:`services.orders.book`) is rebuilt on every start from its own topic (orders for
``GET`` and refund checks) and from ``catalog.products`` (order lines must name a known, active
product); ``/readyz`` is 503 until the replay caught up. A product created a moment ago may not be
in the view yet, so before calling a product unknown the service waits (at most
``SOCIALPROOF_PRODUCT_WAIT_S``) for the view to reach the end of the product topic.

``Idempotency-Key`` on ``POST /v1/orders`` and on refunds makes retries safe
(:mod:`socialproof.idempotency`); the ids are reserved before publishing, so a retry after a 503
republishes the same order (consumers deduplicate by ``order_id``).

Run: ``socialproof serve orders`` (port ``SOCIALPROOF_ORDERS_PORT``, default 8002).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import (
    Identifier,
    OrderCancelled,
    OrderCancelledPayload,
    OrderRefunded,
    OrderRefundedPayload,
    PurchaseCompleted,
    PurchaseCompletedPayload,
    RefundLine,
)
from contracts.events import OrderLine as OrderLineEvent
from contracts.topics import PRODUCTS
from services.orders.book import OrderBook, OrderState, Refund
from services.orders.settings import OrdersSettings
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    RETRY_AFTER_S,
    ApiError,
    ErrorBody,
    FieldError,
    ServiceAuth,
    create_service_app,
)
from socialproof.idempotency import Idempotency, IdempotencyKey
from socialproof.kafka import EventPublisher, topic_name
from socialproof.money import DecimalString, IsoCurrency
from socialproof.topicview import TopicView, ViewUnavailable, lifespan_with_view, view_readiness

SERVICE = "orders"
log = logging.getLogger("socialproof.orders")

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
            lines=_lines_with_refunds(o),
            total=format(o.total, "f"),
            occurred_at=o.occurred_at,
            refunds=[_refund_out(r) for r in o.refunds.values()],
            cancelled_at=o.cancelled_at,
            cancel_reason=o.cancel_reason,
        )


def _lines_with_refunds(o: OrderState) -> list[OrderLineView]:
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


def _refund_out(r: Refund) -> RefundOut:
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


def _unprocessable(message: str, fields: list[FieldError]) -> ApiError:
    return ApiError(422, "validation_failed", message, fields=fields)


OrderId = Annotated[Identifier, Path(description="order id", examples=["o-3f0c9a"])]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such order"}}
CONFLICT = {
    409: {
        "model": ErrorBody,
        "description": "the Idempotency-Key was used with another body, or the order's state "
        "forbids it (more refunded than bought, cancelled)",
    }
}


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    book = OrderBook(products_topic=topic_name(settings, PRODUCTS))
    # Refunds and cancellations check the order's state, then publish: one at a time per process.
    order_lock = asyncio.Lock()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "Orders, refunds and cancellations. Writes need the service token and answer once "
            "the broker confirmed the event. `Idempotency-Key` makes retries safe."
        ),
        lifespan=lifespan_with_view(
            settings, SERVICE, lambda _: TopicView(settings, book.topics, book.apply, name=SERVICE)
        ),
        readiness=view_readiness,
    )

    def publisher(request: Request) -> EventPublisher:
        return request.app.state.publisher

    def view(request: Request) -> TopicView:
        return request.app.state.view

    def idempotency(request: Request, scope: str) -> Idempotency:
        return Idempotency(
            request.app.state.redis, settings.redis_namespace, scope, settings.idempotency_ttl_s
        )

    def existing(order_id: str) -> OrderState:
        order = book.get(order_id)
        if order is None:
            raise ApiError(404, "not_found", f"no order {order_id}")
        return order

    async def check_products(request: Request, order: OrderIn) -> None:
        def problems() -> list[FieldError]:
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

        if problems():
            # The product may have been created a moment ago: let the view reach the topic's end.
            try:
                await view(request).sync(settings.product_wait_s)
            except ViewUnavailable as exc:
                raise ApiError(
                    503,
                    "broker_unavailable",
                    "the event broker does not answer, so the products cannot be checked; "
                    "nothing was accepted: retry with the same Idempotency-Key",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                ) from exc
        if found := problems():
            raise _unprocessable(f"cannot order: {found[0].message}", found)

    @app.post(
        "/v1/orders",
        status_code=201,
        response_model=OrderAccepted,
        tags=["orders"],
        summary="Place an order; 201 once the broker confirmed the purchase event",
        responses={**CONFLICT, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def place_order(
        order: OrderIn, request: Request, _: ServiceAuth, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        seen: dict[str, int] = {}
        for i, line in enumerate(order.lines):
            if line.product_id in seen:
                raise _unprocessable(
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
        idem = idempotency(request, "orders")
        fingerprint = Idempotency.fingerprint(order.model_dump(mode="json"))
        if idempotency_key and (replay := await idem.lookup(idempotency_key, fingerprint)):
            return replay.response()
        await check_products(request, order)
        ids: dict[str, Any] = {
            "order_id": f"o-{uuid.uuid4().hex}",
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        if idempotency_key:
            ids = await idem.reserve(idempotency_key, fingerprint, ids)
        event = PurchaseCompleted.create(
            PurchaseCompletedPayload(
                order_id=ids["order_id"],
                user_id=order.user_id,
                currency=order.currency,
                lines=[OrderLineEvent(**line.model_dump()) for line in order.lines],
            ),
            producer=SERVICE,
            event_id=uuid.UUID(ids["event_id"]),
            occurred_at=datetime.fromisoformat(ids["occurred_at"]),
        )
        delivered = await publisher(request).publish(event)
        log.info(
            "order accepted",
            extra={
                "event_id": str(event.event_id),
                "order_id": ids["order_id"],
                "partition": delivered.partition,
                "offset": delivered.offset,
            },
        )
        answer = OrderAccepted(
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
            total=format(sum((x.unit_price * x.quantity for x in order.lines), Decimal(0)), "f"),
            event_id=event.event_id,
            occurred_at=event.occurred_at,
        ).model_dump(mode="json")
        if idempotency_key:
            await idem.complete(idempotency_key, fingerprint, ids, status=201, body=answer)
        await view(request).wait_delivered(delivered)
        return JSONResponse(answer, status_code=201)

    @app.get(
        "/v1/orders/{order_id}",
        response_model=OrderView,
        tags=["orders"],
        summary="An order with its refunds and status",
        responses={**NOT_FOUND, **AUTH_RESPONSES},
    )
    async def get_order(order_id: OrderId, _: ServiceAuth) -> OrderView:
        return OrderView.of(existing(order_id))

    @app.post(
        "/v1/orders/{order_id}/refunds",
        status_code=201,
        response_model=RefundOut,
        tags=["orders"],
        summary="Refund the whole order (no lines) or some quantities per line",
        responses={**NOT_FOUND, **CONFLICT, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def refund(
        order_id: OrderId,
        body: RefundIn,
        request: Request,
        _: ServiceAuth,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        idem = idempotency(request, "refunds")
        fingerprint = Idempotency.fingerprint(
            {"order_id": order_id, **body.model_dump(mode="json")}
        )
        if idempotency_key and (replay := await idem.lookup(idempotency_key, fingerprint)):
            return replay.response()
        async with order_lock:
            order = existing(order_id)
            ids: dict[str, Any] = {
                "refund_id": f"r-{uuid.uuid4().hex}",
                "event_id": str(uuid.uuid4()),
            }
            if idempotency_key:
                ids = await idem.reserve(idempotency_key, fingerprint, ids)
            done = order.refunds.get(ids["refund_id"])
            if done is None:  # (else a retry whose first attempt did reach the broker)
                lines = _refund_lines(order, body)
                event = OrderRefunded.create(
                    OrderRefundedPayload(
                        refund_id=ids["refund_id"],
                        order_id=order_id,
                        user_id=order.user_id,
                        lines=lines,
                        reason=body.reason,
                    ),
                    producer=SERVICE,
                    event_id=uuid.UUID(ids["event_id"]),
                )
                await view(request).wait_delivered(await publisher(request).publish(event))
                log.info(
                    "order refunded",
                    extra={"event_id": str(event.event_id), "order_id": order_id},
                )
                done = order.refunds.get(ids["refund_id"]) or Refund(
                    event.payload, event.event_id, event.occurred_at
                )
        answer = _refund_out(done).model_dump(mode="json")
        if idempotency_key:
            await idem.complete(idempotency_key, fingerprint, ids, status=201, body=answer)
        return JSONResponse(answer, status_code=201)

    @app.post(
        "/v1/orders/{order_id}/cancel",
        response_model=OrderView,
        tags=["orders"],
        summary="Cancel the whole order (counters treat it as a full refund); repeating is harmless",
        responses={**NOT_FOUND, **CONFLICT, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def cancel(
        order_id: OrderId, request: Request, _: ServiceAuth, body: CancelIn | None = None
    ) -> OrderView:
        async with order_lock:
            order = existing(order_id)
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
                await view(request).wait_delivered(await publisher(request).publish(event))
                log.info(
                    "order cancelled",
                    extra={"event_id": str(event.event_id), "order_id": order_id},
                )
            return OrderView.of(existing(order_id))

    return app


def _refund_lines(order: OrderState, body: RefundIn) -> list[RefundLine]:
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
        raise _unprocessable(f"invalid refund: {errors[0].message}", errors)
    if over:
        raise ApiError(
            409,
            "refund_exceeds_purchase",
            f"refunding more than was bought: {over[0].message}",
            fields=over,
        )
    return [RefundLine(product_id=x.product_id, quantity=x.quantity) for x in body.lines]
