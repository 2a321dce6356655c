"""A plain-Python reference model of referral attribution and share-to-unlock rewards (issue #17),
computed from a list of events, like :mod:`services.counters.oracle` for the counters.

It restates the rules as directly as possible (no Redis, no incremental state, no arrival order),
so tests and tools can check what ``services/counters/referrals.lua`` keeps against it: feed it
the same events (duplicates, any order) and compare. Rules:

- an erased user's events are ignored entirely (as a buyer, a sharer, a redeemer), whenever the
  erasure arrives;
- a share with a ``link_token`` makes that token's link (its sharer); a purchase with a
  ``referral`` is *referred* (every line of it); an order counts once (its first event);
- an order line is *kept* as the counters say (:class:`~services.counters.oracle.Oracle`: not
  cancelled, quantity - refunds > 0);
- the credit for buyer b's purchases of product p goes to the sharer of b's earliest, by (event
  ms, order id), kept referred order with a line of p whose link is known and is not b's own;
- a product's category is that of its newest ``product.upserted`` by ``(occurred_at,
  event_id)`` (deletions leave it);
- a promotion is its newest ``promotion.defined``; its period is ``[starts_at, min(ends_at,
  earliest promotion.ended))``; its scope its product, else its category;
- a sharer's progress is the number of distinct buyers credited to them for products in scope
  with the credited purchase in the period; at ``goal`` they qualify, ``reached`` = the time of
  the goal-th buyer (each buyer at their earliest such purchase);
- a redemption is a purchase carrying a coupon, by the user the coupon belongs to; a redeemed
  reward of a defined promotion is redeemed, whatever else;
- earned sharer rewards: the first ``max_rewards - redeemed`` (all without a cap) qualifying
  sharers without a redeemed one, by ``(reached, sharer id)``;
- a buyer credited for a product in scope within the period earns the buyer reward, if the
  promotion has one;
- reward ids and coupons: :func:`reward_id`, :func:`coupon_code`.

Which rewards are *withdrawn* depends on the order events arrived in (a refund arriving before
its purchase never lets a reward be earned), so the oracle names the rewards that hold (earned or
redeemed); any other reward the store has must be withdrawn.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from contracts import events as ev
from contracts.views import BOUGHT_WINDOWS_MS
from services.counters.oracle import Oracle

ROLES = ("sharer", "buyer")


def reward_id(promotion: str, role: str, user: str) -> str:
    """``rw-`` and the first 24 hex digits of sha1(promotion|role|user)."""
    return "rw-" + hashlib.sha1(f"{promotion}|{role}|{user}".encode()).hexdigest()[:24]


def coupon_code(secret: str, reward: str) -> str:
    """``SP-`` and the first 16 hex digits, upper case, of sha1(secret|reward_id)."""
    return "SP-" + hashlib.sha1(f"{secret}|{reward}".encode()).hexdigest()[:16].upper()


def _ms(event: ev.Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def _newest(events: list[ev.Event], key_of) -> dict:
    out: dict = {}
    for e in events:
        k = key_of(e)
        if k not in out or (_ms(e), str(e.event_id)) > (_ms(out[k]), str(out[k].event_id)):
            out[k] = e
    return out


@dataclass(frozen=True)
class Credit:
    order: str
    sharer: str
    ms: int


@dataclass(frozen=True)
class Promotion:
    id: str
    product: str | None
    category: str | None
    goal: int
    start: int  # ms
    end: int  # ms, excluded: min(ends_at, ended)
    cap: int | None
    buyer_reward: bool


@dataclass(frozen=True, order=True)
class Reward:
    promotion: str
    role: str
    user: str
    status: str  # earned | redeemed

    @property
    def id(self) -> str:
        return reward_id(self.promotion, self.role, self.user)


class ReferralOracle:
    def __init__(self, events: list[ev.Event], secret: str = "", base: Oracle | None = None):
        self.secret = secret
        self.base = base or Oracle(events)
        erased = self.base.erased
        live = [e for e in events if getattr(e.payload, "user_id", None) not in erased]
        kept = {(order, product) for order, product, _, _ in self.base.kept}
        self.links: dict[str, str] = {}
        for e in live:
            if isinstance(e, ev.ProductShared) and e.payload.link_token:
                self.links.setdefault(e.payload.link_token, e.payload.user_id)
        purchases: dict[str, ev.PurchaseCompleted] = {}
        for e in sorted(
            (e for e in live if isinstance(e, ev.PurchaseCompleted)),
            key=lambda e: (_ms(e), str(e.event_id)),
        ):
            purchases.setdefault(e.payload.order_id, e)
        #: (product, buyer) -> the credit
        self.credits: dict[tuple[str, str], Credit] = {}
        for order, e in purchases.items():
            token, buyer = e.payload.referral, e.payload.user_id
            sharer = self.links.get(token) if token else None
            if sharer is None or sharer == buyer:
                continue
            for product in {line.product_id for line in e.payload.lines}:
                if (order, product) not in kept:
                    continue
                old = self.credits.get((product, buyer))
                if old is None or (_ms(e), order) < (old.ms, old.order):
                    self.credits[(product, buyer)] = Credit(order, sharer, _ms(e))
        #: (coupon, user) of every redemption
        self.redemptions = {
            (e.payload.coupon, e.payload.user_id) for e in purchases.values() if e.payload.coupon
        }
        upserts = _newest(
            [e for e in live if isinstance(e, ev.ProductUpserted)], lambda e: e.payload.product_id
        )
        self.categories = {p: e.payload.category for p, e in upserts.items() if e.payload.category}
        ended: dict[str, int] = {}
        for e in live:
            if isinstance(e, ev.PromotionEnded):
                p = e.payload.promotion_id
                ended[p] = min(ended.get(p, _ms(e)), _ms(e))
        defined = _newest(
            [e for e in live if isinstance(e, ev.PromotionDefined)],
            lambda e: e.payload.promotion_id,
        )
        self.promotions: dict[str, Promotion] = {}
        for pid, e in defined.items():
            d = e.payload
            end = int(d.ends_at.timestamp() * 1000)
            self.promotions[pid] = Promotion(
                id=pid,
                product=d.product_id,
                category=None if d.product_id else d.category,
                goal=d.goal.buyers,
                start=int(d.starts_at.timestamp() * 1000),
                end=min(end, ended.get(pid, end)),
                cap=d.max_rewards,
                buyer_reward=d.buyer_reward is not None,
            )

    # --- attribution ------------------------------------------------------------------------

    def via(self, product: str) -> dict[str, int]:
        """Credited buyers of the product -> their credited purchase (ms): ``via:{product}``."""
        return {b: c.ms for (p, b), c in self.credits.items() if p == product}

    def bought_via_shares(self, product: str, now_ms: int) -> dict[str, int]:
        via = self.via(product).values()
        return {
            label: sum(1 for ms in via if ms >= now_ms - BOUGHT_WINDOWS_MS[label])
            for label in ("24h", "7d")
        }

    def sharers(self, product: str) -> dict[str, int]:
        """Sharer -> credited buyers of the product: ``sharers:{product}``."""
        return dict(Counter(c.sharer for (p, _), c in self.credits.items() if p == product))

    def credited_to(self, sharer: str) -> dict[str, int]:
        """``{product}|{buyer}`` -> ms of everything credited to the sharer: ``credits:{s}``."""
        return {f"{p}|{b}": c.ms for (p, b), c in self.credits.items() if c.sharer == sharer}

    # --- promotions -------------------------------------------------------------------------

    def in_scope(self, promotion: Promotion, product: str) -> bool:
        if promotion.product:
            return promotion.product == product
        return promotion.category is not None and self.categories.get(product) == promotion.category

    def _buyers(self, promotion: Promotion) -> dict[str, dict[str, int]]:
        """sharer -> {buyer: earliest credited purchase in scope and period}."""
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for (p, b), c in self.credits.items():
            if self.in_scope(promotion, p) and promotion.start <= c.ms < promotion.end:
                first = out[c.sharer].get(b)
                out[c.sharer][b] = c.ms if first is None else min(first, c.ms)
        return out

    def progress(self, promotion_id: str) -> dict[str, int]:
        """Sharer -> distinct buyers in scope and period: ``pc:{promotion}``."""
        return {s: len(bs) for s, bs in self._buyers(self.promotions[promotion_id]).items()}

    def qualified(self, promotion_id: str) -> dict[str, int]:
        """Sharer -> when they reached the goal: ``pq:{promotion}``."""
        promotion = self.promotions[promotion_id]
        return {
            s: sorted(bs.values())[promotion.goal - 1]
            for s, bs in self._buyers(promotion).items()
            if len(bs) >= promotion.goal
        }

    def _redeemed(self, promotion_id: str, role: str) -> set[str]:
        return {
            user
            for code, user in self.redemptions
            if coupon_code(self.secret, reward_id(promotion_id, role, user)) == code
        }

    def rewards(self) -> dict[str, Reward]:
        """Every reward that holds (earned or redeemed) by reward id."""
        out: dict[str, Reward] = {}
        for pid, promotion in self.promotions.items():
            redeemed = {role: self._redeemed(pid, role) for role in ROLES}
            for role, users in redeemed.items():
                for user in users:
                    out[reward_id(pid, role, user)] = Reward(pid, role, user, "redeemed")
            ranked = sorted(
                (reached, s)
                for s, reached in self.qualified(pid).items()
                if s not in redeemed["sharer"]
            )
            room = len(ranked) if promotion.cap is None else promotion.cap - len(redeemed["sharer"])
            for _, s in ranked[: max(0, room)]:
                out[reward_id(pid, "sharer", s)] = Reward(pid, "sharer", s, "earned")
            if promotion.buyer_reward:
                buyers = {b for bs in self._buyers(promotion).values() for b in bs}
                for b in buyers - redeemed["buyer"]:
                    out[reward_id(pid, "buyer", b)] = Reward(pid, "buyer", b, "earned")
        return out

    def coupon(self, reward: str) -> str:
        return coupon_code(self.secret, reward)
