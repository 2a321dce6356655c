"""Coupons: the rewards the stream processor earns for sharers (and referred buyers), as single-use
discounts on orders.

The processor publishes every reward transition to ``promotions.rewards`` in Kafka transactions
(``promotion.reward_earned`` / ``promotion.reward_withdrawn``, its relay the topic's only writer);
the orders service's view replays that topic read_committed beside its own
(:class:`services.orders.book.OrderBook`) into a :class:`CouponBook`:

- ``reward_earned`` creates the coupon, or makes a withdrawn one ``earned`` again;
- ``reward_withdrawn`` withdraws it (the purchases behind it were refunded, a user was erased,
  the promotion changed) unless it was redeemed;
- a ``purchase.completed`` carrying the coupon redeems it; ``redeemed`` is final (a later
  withdrawal or refund changes nothing). Should two purchases ever carry the same code, the
  earliest by (event time, order id) is the redeeming one, so every replica agrees whatever order
  the topics interleave in.

Single use across processes is :class:`CouponHolds`: before publishing an order with a coupon the
service takes ``{SOCIALPROOF_REDIS_NAMESPACE}:coupon-hold:{code}`` with ``SET NX`` (value: the
order id; a retry of the same order, with the same Idempotency-Key and so the same order id, holds
it again), and gives it back only when the publish fails (503). The hold outlives the moment the
purchase reaches every replica's view, where the coupon is then ``redeemed``. Each hold is one
key, taken with one command and given back by a one-key script (``coupon_release.lua``), so
holds work alike on one Redis and on a Redis Cluster.

:func:`discount` is what a reward takes off an order: a percentage of the total (rounded to the
cent), or a fixed amount in the order's currency, never more than the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts.events import RewardEarned, RewardSpec, RewardWithdrawn

CouponStatus = Literal["earned", "withdrawn", "redeemed"]
CENT = Decimal("0.01")

#: compare-and-delete of a hold: ``coupon_release.lua`` (its header says the arguments)
RELEASE_LUA = (Path(__file__).parent / "coupon_release.lua").read_text(encoding="utf-8")


@dataclass
class Reward:
    """What the newest transition of one reward says (rewards are one partition, in order)."""

    coupon: str
    reward_id: str
    promotion_id: str
    role: str
    user_id: str
    reward: RewardSpec
    earned: bool


@dataclass(frozen=True)
class Coupon:
    coupon: str
    reward_id: str
    promotion_id: str
    role: str
    user_id: str
    reward: RewardSpec
    status: CouponStatus
    #: the order that redeemed it
    order_id: str | None


class CouponBook:
    """coupon code -> the reward behind it, and which order redeemed it."""

    def __init__(self) -> None:
        self.rewards: dict[str, Reward] = {}
        #: code -> (event time, order id) of the earliest purchase that carried it
        self.redeemed: dict[str, tuple[datetime, str]] = {}

    def get(self, code: str) -> Coupon | None:
        reward = self.rewards.get(code)
        if reward is None:
            return None
        redeemed = self.redeemed.get(code)
        status: CouponStatus = (
            "redeemed" if redeemed else "earned" if reward.earned else "withdrawn"
        )
        return Coupon(
            coupon=code,
            reward_id=reward.reward_id,
            promotion_id=reward.promotion_id,
            role=reward.role,
            user_id=reward.user_id,
            reward=reward.reward,
            status=status,
            order_id=redeemed[1] if redeemed else None,
        )

    def redeemed_by(self, code: str) -> str | None:
        found = self.redeemed.get(code)
        return None if found is None else found[1]

    def apply_reward(self, event: RewardEarned | RewardWithdrawn) -> None:
        p = event.payload
        if isinstance(event, RewardEarned):
            self.rewards[p.coupon] = Reward(
                coupon=p.coupon,
                reward_id=p.reward_id,
                promotion_id=p.promotion_id,
                role=p.role,
                user_id=p.user_id,
                reward=p.reward,
                earned=True,
            )
        else:
            known = self.rewards.get(p.coupon)
            if known is not None:
                known.earned = False
            # a withdrawal of a reward never seen earned (cannot happen in the processor's log)
            # leaves nothing to redeem: nothing to record

    def redeem(self, code: str, order_id: str, occurred_at: datetime) -> None:
        mark = (occurred_at, order_id)
        if code not in self.redeemed or mark < self.redeemed[code]:
            self.redeemed[code] = mark


class CurrencyMismatch(ValueError):
    """A fixed-amount reward in another currency than the order's."""


def discount(spec: RewardSpec, total: Decimal, currency: str) -> Decimal:
    """What the reward takes off an order of ``total`` in ``currency``: never more than the total.

    percent: ``value`` % of the total (values above 100 count as 100); fixed: ``value`` in
    ``spec.currency`` (absent: the order's), which must be the order's. Both rounded half-up to
    the cent.
    """
    if spec.kind == "percent":
        off = (total * min(spec.value, Decimal(100)) / 100).quantize(CENT, ROUND_HALF_UP)
    else:
        if spec.currency is not None and spec.currency != currency:
            raise CurrencyMismatch(
                f"the coupon takes {spec.value} {spec.currency} off; the order is in {currency}"
            )
        off = spec.value.quantize(CENT, ROUND_HALF_UP)
    return min(off, total)


class CouponHolds:
    """The Redis side of single use: one order at a time may carry a coupon code."""

    def __init__(
        self, redis: aioredis.Redis | AsyncRedisCluster, namespace: str, ttl_s: int
    ) -> None:
        self.redis, self.prefix, self.ttl_s = redis, f"{namespace}:coupon-hold", ttl_s
        self._release = redis.register_script(RELEASE_LUA)

    def _key(self, code: str) -> str:
        return f"{self.prefix}:{code}"

    async def hold(self, code: str, order_id: str) -> str | None:
        """Hold ``code`` for ``order_id``: None when held now (or already by that order), else
        the order that holds it."""
        previous = await self.redis.set(self._key(code), order_id, nx=True, get=True, ex=self.ttl_s)
        if previous is None:
            return None
        holder = previous.decode() if isinstance(previous, bytes) else str(previous)
        if holder == order_id:  # the same order again (a retry): keep it held a full TTL more
            await self.redis.expire(self._key(code), self.ttl_s)
            return None
        return holder

    async def release(self, code: str, order_id: str) -> None:
        """Give the code back, if ``order_id`` still holds it (its publish failed)."""
        await self._release(keys=[self._key(code)], args=[order_id])
