"""The orders service's view: every order with its refunds and cancellation, plus the products.

Built by replaying ``orders.events`` (this service's own topic) and ``catalog.products`` from the
beginning (see :mod:`socialproof.topicview`). Applying is idempotent: a purchase republished after
a 503 retry (same ``order_id``) and a refund seen twice (same ``refund_id``) change nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from contracts import codec
from contracts.events import (
    OrderCancelled,
    OrderLine,
    OrderRefunded,
    OrderRefundedPayload,
    PurchaseCompleted,
)
from contracts.topics import ORDERS, PRODUCTS
from socialproof.productview import ProductTable
from socialproof.topicview import Record


@dataclass
class Refund:
    payload: OrderRefundedPayload
    event_id: uuid.UUID
    occurred_at: datetime


@dataclass
class OrderState:
    order_id: str
    user_id: str
    currency: str
    lines: list[OrderLine]
    event_id: uuid.UUID
    occurred_at: datetime
    refunds: dict[str, Refund] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    def bought(self, product_id: str) -> int:
        return sum(line.quantity for line in self.lines if line.product_id == product_id)

    def refundable(self, product_id: str) -> int:
        """How many of the product may still be refunded (none once the order is cancelled)."""
        if self.cancelled:
            return 0
        return max(0, self.bought(product_id) - self.refunded.get(product_id, 0))

    @property
    def product_ids(self) -> list[str]:
        return list(dict.fromkeys(line.product_id for line in self.lines))

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if not any(self.refundable(p) for p in self.product_ids):
            return "refunded"
        if self.refunds:
            return "partially_refunded"
        return "accepted"

    @property
    def total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))


class OrderBook:
    """order_id -> :class:`OrderState`, and the product table orders are validated against."""

    topics = (ORDERS, PRODUCTS)

    def __init__(self, products_topic: str = PRODUCTS.name) -> None:
        #: the broker's name of the product topic (``socialproof.kafka.topic_name``)
        self.products_topic = products_topic
        self.orders: dict[str, OrderState] = {}
        self.products = ProductTable()

    def get(self, order_id: str) -> OrderState | None:
        return self.orders.get(order_id)

    def apply(self, record: Record) -> None:
        if record.topic == self.products_topic:
            self.products.apply(record)
            return
        if record.value is None:
            return
        event = codec.decode(record.value)
        if isinstance(event, PurchaseCompleted):
            p = event.payload
            # the first copy wins: a retry republishes the same order with the same id
            self.orders.setdefault(
                p.order_id,
                OrderState(
                    order_id=p.order_id,
                    user_id=p.user_id,
                    currency=p.currency,
                    lines=list(p.lines),
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                ),
            )
        elif isinstance(event, OrderRefunded):
            order = self.orders.get(event.payload.order_id)
            if order is None or event.payload.refund_id in order.refunds:
                return
            order.refunds[event.payload.refund_id] = Refund(
                event.payload, event.event_id, event.occurred_at
            )
            for line in event.payload.lines:
                order.refunded[line.product_id] = (
                    order.refunded.get(line.product_id, 0) + line.quantity
                )
        elif isinstance(event, OrderCancelled):
            order = self.orders.get(event.payload.order_id)
            if order is not None and order.cancelled_at is None:
                order.cancelled_at = event.occurred_at
                order.cancel_reason = event.payload.reason
