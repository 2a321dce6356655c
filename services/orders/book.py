"""The orders service's view: every order with its refunds and cancellation, the products, and
the coupons.

Built by replaying ``orders.events`` (this service's own topic), ``catalog.products`` and
``promotions.rewards`` (the stream processor's rewards, written in Kafka transactions: the view
reads read_committed) from the beginning (see :mod:`socialproof.topicview`). Applying is
idempotent: a purchase republished after a 503 retry (same ``order_id``) and a refund seen twice
(same ``refund_id``) change nothing. Coupons are :class:`services.orders.coupons.CouponBook`: a
reward earned makes one, a withdrawal withdraws it, a purchase carrying it redeems it.
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
    RewardEarned,
    RewardWithdrawn,
)
from contracts.topics import ORDERS, PRODUCTS, REWARDS
from services.orders.coupons import CouponBook
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
    #: the share link the buyer came through, the coupon redeemed and what it took off
    referral: str | None = None
    coupon: str | None = None
    discount: Decimal | None = None
    #: the storefront visitor id the order came with (badge experiments' attribution)
    visitor_id: str | None = None

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
    def subtotal(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))

    @property
    def total(self) -> Decimal:
        """What the buyer pays: the lines less the coupon's discount."""
        return self.subtotal - (self.discount or Decimal(0))


class OrderBook:
    """order_id -> :class:`OrderState`, the product table orders are validated against, and the
    coupons."""

    topics = (ORDERS, PRODUCTS, REWARDS)

    def __init__(
        self, products_topic: str = PRODUCTS.name, rewards_topic: str = REWARDS.name
    ) -> None:
        #: the broker's names of the product and reward topics (``socialproof.kafka.topic_name``)
        self.products_topic, self.rewards_topic = products_topic, rewards_topic
        self.orders: dict[str, OrderState] = {}
        self.products = ProductTable()
        self.coupons = CouponBook()

    def get(self, order_id: str) -> OrderState | None:
        return self.orders.get(order_id)

    def apply(self, record: Record) -> None:
        if record.topic == self.products_topic:
            self.products.apply(record)
            return
        if record.value is None:
            return
        event = codec.decode(record.value)
        if isinstance(event, RewardEarned | RewardWithdrawn):
            if record.topic == self.rewards_topic:  # its only writer is the stream processor
                self.coupons.apply_reward(event)
        elif isinstance(event, PurchaseCompleted):
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
                    referral=p.referral,
                    coupon=p.coupon,
                    discount=p.discount,
                    visitor_id=p.visitor_id,
                ),
            )
            if p.coupon is not None:
                self.coupons.redeem(p.coupon, p.order_id, event.occurred_at)
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
