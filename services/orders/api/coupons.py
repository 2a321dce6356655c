"""Coupons on the orders API: ``GET /v1/coupons/{code}`` and redeeming one on ``POST /v1/orders``.

A coupon is a reward the stream processor earned for a user (:mod:`services.orders.coupons`,
replayed from ``promotions.rewards``). An order's ``coupon`` is refused with 422 naming
``coupon`` unless the coupon exists (after the view caught up with the topics: the reward may
have been published a moment ago), belongs to the order's ``user_id`` and is ``earned``; a
fixed-amount coupon must also be in the order's currency. Those checks run before the order's
ids are reserved (:func:`coupon_problems`), so a refused body may be fixed and retried with the
same ``Idempotency-Key``.

Then, with the order id reserved (:class:`Redemption`): a coupon already redeemed by another
order is 422 (``coupon_redeemed``); the coupon is held in Redis for this order (``SET NX``,
:class:`services.orders.coupons.CouponHolds`), or 409 ``coupon_in_use`` while another order holds
it; the discount is computed and the purchase published with ``coupon`` and ``discount``. If the
publish fails (503) the hold is given back; a retry with the same Idempotency-Key is the same
order id and holds it again, and a replay of the stored answer redeems nothing twice.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import redis.exceptions
from fastapi import APIRouter

from services.orders.api.deps import Book, Settings, caught_up
from services.orders.book import OrderBook
from services.orders.coupons import CouponHolds, CurrencyMismatch, discount
from services.orders.schemas import NOT_FOUND_COUPON, CouponId, CouponOut, OrderIn
from socialproof.deps import View
from socialproof.http import AUTH_RESPONSES, ApiError, FieldError, ServiceAuth

log = logging.getLogger("socialproof.orders")
router = APIRouter(tags=["coupons"])


@router.get(
    "/v1/coupons/{code}",
    response_model=CouponOut,
    summary="A reward coupon: whose, what it takes off, and whether it is earned, withdrawn or "
    "redeemed (by which order)",
    responses={**NOT_FOUND_COUPON, **AUTH_RESPONSES},
)
async def get_coupon(
    code: CouponId, _: ServiceAuth, book: Book, view: View, settings: Settings
) -> CouponOut:
    found = book.coupons.get(code)
    if found is None:  # the reward may have been published a moment ago
        await caught_up(view, settings.product_wait_s, "the coupon cannot be looked up")
        found = book.coupons.get(code)
    if found is None:
        raise ApiError(404, "not_found", f"no coupon {code}")
    return CouponOut.of(found)


def coupon_error(message: str, kind: str) -> FieldError:
    return FieldError(field="coupon", message=message, type=kind)


def coupon_problems(order: OrderIn, book: OrderBook) -> list[FieldError]:
    """Why the order's coupon cannot be redeemed, as far as the view tells before the order has
    an id (whether another order redeemed it is :meth:`Redemption.hold`'s question)."""
    if order.coupon is None:
        return []
    found = book.coupons.get(order.coupon)
    if found is None:
        return [coupon_error(f"unknown coupon {order.coupon}", "unknown_coupon")]
    if found.user_id != order.user_id:
        # never say whose it is
        return [coupon_error(f"coupon {order.coupon} is not user {order.user_id}'s", "not_owner")]
    if found.status == "withdrawn":
        return [
            coupon_error(
                f"coupon {order.coupon} was withdrawn (the purchases that earned it were "
                "refunded, or the promotion changed)",
                "coupon_withdrawn",
            )
        ]
    try:
        discount(found.reward, Decimal(0), order.currency)
    except CurrencyMismatch as exc:
        return [coupon_error(str(exc), "coupon_currency")]
    return []


class Redemption:
    """Redeeming the order's coupon, if it has one (else every step does nothing)."""

    def __init__(self, order: OrderIn, book: OrderBook, holds: CouponHolds) -> None:
        self.order, self.book, self.holds = order, book, holds
        self.code = order.coupon

    async def hold(self, order_id: str) -> None:
        """422 when another order redeemed the coupon, 409 while another holds it; else it is
        held for ``order_id``."""
        if self.code is None:
            return
        by = self.book.coupons.redeemed_by(self.code)
        if by is not None and by != order_id:  # (by == order_id: a retry of a landed publish)
            raise ApiError(
                422,
                "validation_failed",
                f"coupon {self.code} was already redeemed",
                fields=[coupon_error(f"already redeemed by order {by}", "coupon_redeemed")],
            )
        holder = await self.holds.hold(self.code, order_id)
        if holder is not None:
            raise ApiError(
                409,
                "coupon_in_use",
                f"coupon {self.code} is being redeemed by another order",
                fields=[coupon_error(f"held by order {holder}", "coupon_in_use")],
            )

    def discount(self, subtotal: Decimal) -> Decimal | None:
        """What the coupon takes off (checked in :func:`coupon_problems`: it exists)."""
        if self.code is None:
            return None
        found = self.book.coupons.get(self.code)
        assert found is not None
        return discount(found.reward, subtotal, self.order.currency)

    async def release(self, order_id: str) -> None:
        """The order was not published (503): the coupon is free again."""
        if self.code is None:
            return
        try:
            await self.holds.release(self.code, order_id)
        except redis.exceptions.RedisError as exc:  # it expires with the Idempotency-Key
            log.warning(
                "could not release a coupon hold", extra={"coupon": self.code, "error": repr(exc)}
            )
