"""Reads share-to-unlock promotions and referral credits from the serving store (issue #17; the
keys are the "Referrals and promotions" section of :mod:`contracts.views`, written by the stream
processor). Used by :mod:`services.notifier.api.promotions` and by the viewer's own stream.

- ``product_promotions(p)``: the active promotions of a product, scoped to it (``promos:{p}``) or
  to its category (``catpromos:{pcat:{p}}``): one script call. Public.
- ``progress(promotion, user)``: a sharer's progress in a promotion: credited buyers, the goal,
  what is left, the user's rewards in it (coupon and status), and the first names of credited
  buyers who are the user's friends and share purchases with friends (nobody else is ever
  named). One script call; ``progress_many`` pipelines several for the live stream. The caller
  must make sure ``user`` is the service's caller or the authenticated viewer.
- ``sharers(p, limit)``: a product's top sharers by credited buyers (for the shop only).

Statuses are by wall clock, like the catalog's: ``scheduled`` before ``starts_at``, ``ended``
from ``ends_at`` or once the shop ended it, else ``active``. The store keeps the period as
``from``/``to`` (``to`` = min(ends_at, ended)), so an ended promotion reads ``ends_at`` = when it
ended. Reads are independent of the processor's code: only the key layout is shared.

Where (issue #16, :mod:`contracts.layout`): every key these reads touch is in the *referrals
shard* (``reader.layout.referrals_keys``: promotions, categories, credits, progress, rewards) or
is a user fact replicated into every shard (friends, consent, names, erased), so each read is
one shard's, as on a single Redis: each script gets ``keys=[a key of the referrals shard]`` so
that a cluster client routes it there, and touches only that shard's prefix. No merge, the same
round trips as on one Redis (one script call; ``progress_many``: one pipeline; ``sharers``: one
pipeline, two when the last place is tied).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from redis.exceptions import NoScriptError

from contracts.views import Keys
from services.notifier.proof import ProofReader

#: first names of credited friends in a progress answer, at most
MAX_NAMED_BUYERS = 10
#: a sharer's credits scanned for those names, at most (oldest first)
CREDITS_SCANNED = 1000
#: promotions one live stream follows, at most
MAX_FOLLOWED = 20

PromotionStatus = Literal["scheduled", "active", "ended"]


def _lua(name: str) -> str:
    return (Path(__file__).parent / "lua" / f"{name}.lua").read_text(encoding="utf-8")


# KEYS: a key of the referrals shard (routing); ARGV: its prefix, promotion, user, max names, scan,
# default share consent. See the file.
PROGRESS_LUA = _lua("promotion_progress")
# KEYS: a key of the referrals shard (routing); ARGV: its prefix, product. Returns {promotion id, {field, value, ...}, ...}.
PRODUCT_PROMOTIONS_LUA = _lua("product_promotions")


class Reward(BaseModel):
    kind: Literal["percent", "fixed"]
    value: str = Field(description="percent: 1..100; fixed: the amount in `currency`")
    currency: str | None = None


class Goal(BaseModel):
    buyers: int = Field(description="distinct buyers through the sharer's links")


class Promotion(BaseModel):
    id: str
    title: str = ""
    product_id: str | None = Field(default=None, description="the product in scope, or …")
    category: str | None = Field(default=None, description="… every product of this category")
    sharer_reward: Reward
    buyer_reward: Reward | None = None
    goal: Goal
    max_rewards: int | None = None
    starts_at: datetime
    ends_at: datetime = Field(description="when it ends (or ended, if the shop ended it early)")
    status: PromotionStatus


class ProductPromotions(BaseModel):
    product_id: str
    promotions: list[Promotion] = Field(
        description="active ones: the product's own first, then its category's, by end"
    )


class RewardState(BaseModel):
    reward_id: str
    role: Literal["sharer", "buyer"]
    coupon: str
    status: Literal["earned", "withdrawn", "redeemed"]


class Progress(BaseModel):
    promotion_id: str
    user_id: str
    buyers: int = Field(description="distinct buyers credited to the user's links in scope")
    goal: int
    remaining: int = Field(description="buyers still needed (0 once the goal is reached)")
    rewards: list[RewardState] = Field(description="the user's rewards in this promotion")
    named_buyers: list[str] = Field(
        description="first names of credited buyers who are the user's friends and share "
        "purchases with friends (the others are only counted)"
    )
    status: PromotionStatus = Field(description="the promotion's status")


class Sharer(BaseModel):
    user_id: str
    buyers: int = Field(description="distinct buyers credited to the sharer for this product")


class Sharers(BaseModel):
    product_id: str
    sharers: list[Sharer] = Field(description="by credited buyers, most first (ties by id)")
    sharers_total: int = Field(description="sharers with at least one credited buyer")
    credited_buyers: int = Field(description="buyers who bought through a friend's link")


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _ms(value: str | None) -> datetime:
    return datetime.fromtimestamp(int(float(value or 0)) / 1000, UTC)


def _reward(fields: dict[str, str], prefix: str) -> Reward | None:
    kind = fields.get(f"{prefix}k")
    if kind not in ("percent", "fixed"):
        return None
    return Reward(
        kind=kind, value=fields.get(f"{prefix}v", "0"), currency=fields.get(f"{prefix}c") or None
    )


def status_of(fields: dict[str, str], now_ms: int) -> PromotionStatus:
    start, end = int(float(fields.get("from", 0))), int(float(fields.get("to", 0)))
    if "ended" in fields or now_ms >= end:
        return "ended"
    return "scheduled" if now_ms < start else "active"


def parse_promotion(promotion_id: str, fields: dict[str, str], now_ms: int) -> Promotion | None:
    """A promotion from its ``{ns}:promo:{id}`` hash (None when it lacks the sharer reward)."""
    sharer = _reward(fields, "s")
    if sharer is None:
        return None
    cap = fields.get("cap")
    return Promotion(
        id=promotion_id,
        title=fields.get("title", ""),
        product_id=fields.get("p") or None,
        category=fields.get("cat") or None,
        sharer_reward=sharer,
        buyer_reward=_reward(fields, "b"),
        goal=Goal(buyers=int(fields.get("goal", 0))),
        max_rewards=int(cap) if cap else None,
        starts_at=_ms(fields.get("from")),
        ends_at=_ms(fields.get("to")),
        status=status_of(fields, now_ms),
    )


def _pairs(flat: list) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


class PromotionReader:
    """Reads through the proof reader's client and layout (which follows a rebuild's switch:
    ``reader.layout`` is replaced, so it is read on every call)."""

    def __init__(self, reader: ProofReader, default_share_purchases: bool = False) -> None:
        self.reader = reader
        self.redis = reader.redis
        self._default_share = "1" if default_share_purchases else "0"
        self._progress = self.redis.register_script(PROGRESS_LUA)
        self._product = self.redis.register_script(PRODUCT_PROMOTIONS_LUA)

    @property
    def keys(self) -> Keys:
        """The referrals shard's keys (the namespace itself with one shard)."""
        return self.reader.layout.referrals_keys

    async def product_promotions(
        self, product_id: str, now_ms: int | None = None
    ) -> list[Promotion]:
        """The product's active promotions: its own first, then its category's, each by end."""
        now_ms = _now_ms(now_ms)
        keys = self.keys
        reply = await self._product(
            keys=[keys.product_promotions(product_id)], args=[keys.ns, product_id]
        )
        found = [
            parse_promotion(str(reply[i]), _pairs(reply[i + 1]), now_ms)
            for i in range(0, len(reply), 2)
        ]
        active = [p for p in found if p is not None and p.status == "active"]
        active.sort(key=lambda p: (p.product_id is None, p.ends_at, p.id))
        return active

    async def progress(
        self, promotion_id: str, user_id: str, now_ms: int | None = None
    ) -> Progress | None:
        """The user's progress in the promotion; None for an unknown promotion."""
        return (await self.progress_many([promotion_id], user_id, now_ms))[0]

    async def progress_many(
        self, promotion_ids: list[str], user_id: str, now_ms: int | None = None
    ) -> list[Progress | None]:
        """``progress`` of several promotions in one round trip (the live stream's read)."""
        if not promotion_ids:
            return []
        now_ms = _now_ms(now_ms)
        keys = self.keys
        for attempt in range(2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for promotion_id in promotion_ids:
                        # EVALSHA itself: a pipeline running a Script object asks SCRIPT EXISTS
                        pipe.evalsha(
                            self._progress.sha,
                            1,
                            keys.promotion(promotion_id),  # routes it to the referrals shard
                            keys.ns,
                            promotion_id,
                            user_id,
                            MAX_NAMED_BUYERS,
                            CREDITS_SCANNED,
                            self._default_share,
                        )
                    replies = await pipe.execute()
                break
            except NoScriptError:  # Redis restarted or flushed its scripts: load it, once
                if attempt:
                    raise
                await self.redis.script_load(PROGRESS_LUA)
        return [
            _progress(promotion_id, user_id, reply, now_ms)
            for promotion_id, reply in zip(promotion_ids, replies, strict=True)
        ]

    async def sharers(self, product_id: str, limit: int = 10) -> Sharers:
        """The product's top ``limit`` sharers by credited buyers (ties by user id)."""
        keys = self.keys
        key = keys.sharers(product_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(key, 0, limit - 1, withscores=True)
            pipe.zcard(key)
            pipe.zcard(keys.bought_via_shares(product_id))
            top, total, credited = await pipe.execute()
        ranked = {str(user): int(score) for user, score in top}
        if len(top) == limit and total > limit:
            # the last place may be shared: take every sharer with that score, then cut by id
            lowest = top[-1][1]
            ties = await self.redis.zrangebyscore(key, lowest, lowest, withscores=True)
            ranked.update({str(user): int(score) for user, score in ties})
        order = sorted(ranked.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return Sharers(
            product_id=product_id,
            sharers=[Sharer(user_id=user, buyers=buyers) for user, buyers in order],
            sharers_total=total,
            credited_buyers=credited,
        )


def _progress(promotion_id: str, user_id: str, reply: list, now_ms: int) -> Progress | None:
    if not reply:
        return None
    definition, buyers, rewards, names = reply
    fields = _pairs(definition)
    goal = int(fields.get("goal", 0))
    states = [
        RewardState(
            reward_id=str(rewards[i]),
            role=rewards[i + 1],
            coupon=str(rewards[i + 2]),
            status=rewards[i + 3],
        )
        for i in range(0, len(rewards), 4)
        if rewards[i + 1] in ("sharer", "buyer")
        and rewards[i + 3] in ("earned", "withdrawn", "redeemed")
    ]
    states.sort(key=lambda r: (r.role != "sharer", r.reward_id))
    return Progress(
        promotion_id=promotion_id,
        user_id=user_id,
        buyers=int(buyers),
        goal=goal,
        remaining=max(0, goal - int(buyers)),
        rewards=states,
        named_buyers=[str(n) for n in names],
        status=status_of(fields, now_ms),
    )
