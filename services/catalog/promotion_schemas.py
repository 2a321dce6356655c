"""The promotion API's request and response bodies (what the OpenAPI document shows) and the
checks pydantic cannot express field by field.

A request is parsed by pydantic first (types, lengths, ids, time zones, unknown fields); then
:meth:`PromotionData.problems` checks what spans fields (exactly one of ``product_id`` and
``category``, ``ends_at`` after ``starts_at``, a percentage in 1..100, a fixed amount with its
currency). Every problem is a 422 naming the field, in the shared error shape.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from contracts.events import (
    Identifier,
    Money,
    PromotionFields,
    PromotionGoal,
    RewardSpec,
    UtcDatetime,
)
from services.catalog.promotions import PromotionState, Status
from services.catalog.schemas import Category
from socialproof.http import FieldError
from socialproof.money import DECIMAL_PATTERN, IsoCurrency

_DECIMAL = re.compile(DECIMAL_PATTERN)


def _int_or_decimal_string(value: Any) -> Any:
    # 10 and "12.5" are exact; 12.5 as a JSON number went through binary floating point.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError('must be an integer or a decimal string such as "12.5"')
    if isinstance(value, str) and not _DECIMAL.match(value):
        raise ValueError('must be a decimal string such as "12.5" (up to 8 digits, 4 decimals)')
    return value


RewardValue = Annotated[
    Money,
    BeforeValidator(_int_or_decimal_string),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": DECIMAL_PATTERN},
            ],
            "description": "percent: 1..100; fixed: the amount (> 0) in `currency`; an integer "
            "or a decimal string, never a JSON fraction",
            "examples": [10, "5.00"],
        }
    ),
]

EXAMPLE: dict[str, Any] = {
    "product_id": "cup-espresso",
    "title": "Share and get 10% off when 3 friends buy",
    "sharer_reward": {"kind": "percent", "value": 10},
    "buyer_reward": {"kind": "fixed", "value": "5.00", "currency": "EUR"},
    "goal": {"buyers": 3},
    "starts_at": "2026-12-01T00:00:00Z",
    "ends_at": "2026-12-31T00:00:00Z",
    "max_rewards": 100,
}


class RewardIn(BaseModel):
    """What a reward takes off an order: a percentage of its total, or a fixed amount."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "percent", "value": 10},
                {"kind": "fixed", "value": "5.00", "currency": "EUR"},
            ]
        },
    )

    kind: Literal["percent", "fixed"]
    value: RewardValue
    currency: IsoCurrency | None = Field(
        default=None, description="required for a fixed amount, absent for a percentage"
    )

    def problems(self, field: str) -> list[FieldError]:
        found = []
        if self.kind == "percent":
            if not Decimal(1) <= self.value <= Decimal(100):
                found.append(_error(f"{field}.value", "a percentage is 1..100", "out_of_range"))
            if self.currency is not None:
                found.append(
                    _error(f"{field}.currency", "only a fixed amount has a currency", "unexpected")
                )
        else:
            if self.value <= 0:
                found.append(_error(f"{field}.value", "a fixed amount is above 0", "out_of_range"))
            if self.currency is None:
                found.append(
                    _error(f"{field}.currency", "a fixed amount needs its currency", "missing")
                )
        return found

    def spec(self) -> RewardSpec:
        return RewardSpec(kind=self.kind, value=self.value, currency=self.currency)


class GoalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"buyers": 3}]})

    buyers: int = Field(
        ge=1,
        le=1000,
        description="distinct buyers (other than the sharer) who buy a product in scope through "
        "the sharer's links within the period",
    )


class PromotionData(BaseModel):
    """A promotion's fields (every field: PUT replaces the whole promotion). Scope: exactly one
    of ``product_id`` (a product of this catalogue) and ``category`` (every product in it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    product_id: Identifier | None = Field(default=None, description="the one product in scope")
    category: Category | None = Field(default=None, description="every product of a category")
    title: str = Field(default="", max_length=200, description="shown on the storefront")
    sharer_reward: RewardIn = Field(description="what the sharer earns on reaching the goal")
    buyer_reward: RewardIn | None = Field(
        default=None, description="what a buyer arriving through a link earns (optional)"
    )
    goal: GoalIn
    starts_at: UtcDatetime = Field(description="start of the period (event time), with a zone")
    ends_at: UtcDatetime = Field(description="end of the period, after starts_at")
    max_rewards: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="at most this many sharers' rewards: the first to reach the goal win",
    )

    def problems(self) -> list[FieldError]:
        """What spans fields; [] when the promotion makes sense."""
        found = []
        if (self.product_id is None) == (self.category is None):
            message = (
                "give product_id or category, not both"
                if self.product_id is not None
                else "give product_id or category"
            )
            found += [_error(f, message, "scope") for f in ("product_id", "category")]
        if self.ends_at <= self.starts_at:
            found.append(_error("ends_at", "must be after starts_at", "period"))
        found += self.sharer_reward.problems("sharer_reward")
        if self.buyer_reward is not None:
            found += self.buyer_reward.problems("buyer_reward")
        return found

    def fields(self, promotion_id: str) -> PromotionFields:
        return PromotionFields(
            promotion_id=promotion_id,
            product_id=self.product_id,
            category=self.category,
            title=self.title,
            sharer_reward=self.sharer_reward.spec(),
            buyer_reward=None if self.buyer_reward is None else self.buyer_reward.spec(),
            goal=PromotionGoal(buyers=self.goal.buyers),
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            max_rewards=self.max_rewards,
        )


class PromotionCreate(PromotionData):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"id": "promo-1", **EXAMPLE}]}
    )

    id: Identifier | None = Field(
        default=None, description="the promotion id; generated when omitted", examples=["promo-1"]
    )


def _error(field: str, message: str, kind: str) -> FieldError:
    return FieldError(field=field, message=message, type=kind)


# --- answers ------------------------------------------------------------------------------------


class Reward(BaseModel):
    kind: Literal["percent", "fixed"]
    value: str = Field(description="decimal string", examples=["10"])
    currency: str | None = None

    @classmethod
    def of(cls, spec: RewardSpec) -> Reward:
        return cls(kind=spec.kind, value=format(spec.value, "f"), currency=spec.currency)


class Goal(BaseModel):
    buyers: int


class Promotion(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "promo-1",
                    **EXAMPLE,
                    "category": None,
                    "sharer_reward": {"kind": "percent", "value": "10", "currency": None},
                    "status": "active",
                    "ended_at": None,
                }
            ]
        }
    )

    id: str
    product_id: str | None
    category: str | None
    title: str
    sharer_reward: Reward
    buyer_reward: Reward | None
    goal: Goal
    starts_at: datetime
    ends_at: datetime
    max_rewards: int | None
    status: Status = Field(
        description="by wall clock: scheduled before starts_at, active until ends_at or until "
        "the shop ended it, ended after"
    )
    ended_at: datetime | None = Field(
        description="when the shop ended it (DELETE); null otherwise, also once past ends_at"
    )

    @classmethod
    def of(cls, promotion: PromotionState, now: datetime) -> Promotion:
        f = promotion.fields
        return cls(
            id=f.promotion_id,
            product_id=f.product_id,
            category=f.category,
            title=f.title,
            sharer_reward=Reward.of(f.sharer_reward),
            buyer_reward=None if f.buyer_reward is None else Reward.of(f.buyer_reward),
            goal=Goal(buyers=f.goal.buyers),
            starts_at=f.starts_at,
            ends_at=f.ends_at,
            max_rewards=f.max_rewards,
            status=promotion.status(now),
            ended_at=promotion.ended_at,
        )
