"""The HTTP bodies of experiments and interaction beacons (issue #18): what the OpenAPI document
shows, and the checks pydantic cannot express field by field.

A request is parsed by pydantic first (types, lengths, ids, time zones, unknown fields); then
:meth:`ExperimentCreate.problems` checks what spans fields (a split per variant summing to 100,
distinct variant names, exactly one of ``products`` and ``category``, no elements on a variant
without a badge). Every problem is a 422 naming the field, in the shared error shape
(:class:`socialproof.http.ErrorBody`), e.g. ``split`` or ``variants[1].elements``.

Beacons (:class:`BeaconIn`) are parsed here too; what needs the registry or the clock (an
experiment that exists, a product in its scope, the visitor's variant, ``at`` not in the future)
is checked by :mod:`services.notifier.api.beacons`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import (
    MAX_ATTRIBUTION_WINDOW_H,
    BadgeElement,
    ExperimentFields,
    ExperimentVariant,
    Identifier,
    UtcDatetime,
    VariantName,
    VisitorId,
)
from services.notifier.experiments import ExperimentState, Status
from socialproof.http import FieldError

Category = Annotated[str, Field(min_length=1, max_length=100, examples=["kitchen"])]

EXAMPLE: dict[str, Any] = {
    "id": "badge-test-1",
    "title": "Friends or counts?",
    "category": "kitchen",
    "variants": [
        {"name": "control", "badge": "none"},
        {"name": "friends", "elements": ["friends", "bought"]},
        {"name": "counts", "elements": ["bought", "reviews"], "min_count": 5},
    ],
    "split": [34, 33, 33],
    "attribution_window_h": 24,
}


# --- experiments --------------------------------------------------------------------------------


class VariantIn(BaseModel):
    """What one variant shows: no badge (``badge: none``, typically the control), or the badge
    with these elements in this order (absent: the widget's default) and count threshold."""

    model_config = ConfigDict(extra="forbid")

    name: VariantName = Field(description="lower case, short", examples=["friends"])
    badge: Literal["show", "none"] = "show"
    elements: list[BadgeElement] | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        description="what the badge shows, in order; only with `badge: show`",
    )
    min_count: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="the badge hides counts below this; only with `badge: show`",
    )

    def variant(self) -> ExperimentVariant:
        return ExperimentVariant(
            name=self.name, badge=self.badge, elements=self.elements, min_count=self.min_count
        )


class ExperimentCreate(BaseModel):
    """A new experiment. Scope: exactly one of ``products`` and ``category``. The first variant
    is the control; ``split`` gives each variant's share of visitors in percent (summing to
    100). Once created it never changes: a new design is a new experiment."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    id: Identifier | None = Field(
        default=None, description="the experiment id; generated when omitted", examples=["exp-1"]
    )
    title: str = Field(default="", max_length=200)
    products: list[Identifier] | None = Field(
        default=None, min_length=1, max_length=1000, description="the products in scope"
    )
    category: Category | None = Field(default=None, description="every product of a category")
    variants: list[VariantIn] = Field(min_length=2, max_length=6)
    split: list[Annotated[int, Field(ge=1, le=99)]] = Field(
        min_length=2, max_length=6, description="percent of visitors per variant, in order"
    )
    attribution_window_h: int = Field(
        default=24,
        ge=1,
        le=MAX_ATTRIBUTION_WINDOW_H,
        description="a purchase counts for the variant seen at most this long before it",
    )
    minimum_detectable_effect: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="the smallest relative uplift worth detecting (0.2: +20 %); sets the "
        "sample a verdict needs",
    )
    starts_at: UtcDatetime | None = Field(
        default=None, description="when assignment begins, with a zone; default: now"
    )

    def problems(self) -> list[FieldError]:
        """What spans fields; [] when the experiment makes sense."""
        found: list[FieldError] = []
        if (self.products is None) == (self.category is None):
            message = (
                "give products or category, not both"
                if self.products is not None
                else "give products or category"
            )
            found += [_error(f, message, "scope") for f in ("products", "category")]
        if self.products is not None and len(set(self.products)) != len(self.products):
            found.append(_error("products", "each product once", "duplicate"))
        if len(self.split) != len(self.variants):
            message = f"one share per variant: {len(self.variants)} variants, {len(self.split)}"
            found.append(_error("split", message, "split_length"))
        if sum(self.split) != 100:
            found.append(_error("split", f"must sum to 100, not {sum(self.split)}", "split_sum"))
        seen: set[str] = set()
        for i, variant in enumerate(self.variants):
            if variant.name in seen:
                message = f"variant name {variant.name} is used twice"
                found.append(_error(f"variants[{i}].name", message, "duplicate"))
            seen.add(variant.name)
            if variant.badge == "none":
                for attr in ("elements", "min_count"):
                    if getattr(variant, attr) is not None:
                        message = f"a variant without a badge (badge: none) has no {attr}"
                        found.append(_error(f"variants[{i}].{attr}", message, "unexpected"))
            if variant.elements is not None and len(set(variant.elements)) != len(variant.elements):
                found.append(_error(f"variants[{i}].elements", "each element once", "duplicate"))
        return found

    def fields(self, experiment_id: str, now: datetime) -> ExperimentFields:
        return ExperimentFields(
            experiment_id=experiment_id,
            title=self.title,
            products=self.products,
            category=self.category,
            variants=[v.variant() for v in self.variants],
            split=self.split,
            attribution_window_h=self.attribution_window_h,
            minimum_detectable_effect=self.minimum_detectable_effect,
            starts_at=self.starts_at or now,
        )


def _error(field: str, message: str, kind: str) -> FieldError:
    return FieldError(field=field, message=message, type=kind)


class Variant(BaseModel):
    name: str
    badge: Literal["show", "none"]
    elements: list[BadgeElement] | None
    min_count: int | None


class Experiment(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE,
                    "experiment_id": EXAMPLE["id"],
                    "products": None,
                    "minimum_detectable_effect": 0.2,
                    "starts_at": "2026-12-01T10:00:00Z",
                    "started_at": "2026-12-01T10:00:00Z",
                    "stopped_at": None,
                    "status": "active",
                }
            ]
        }
    )

    id: str
    experiment_id: str = Field(description="the same as `id`")
    title: str
    products: list[str] | None
    category: str | None
    variants: list[Variant] = Field(description="the first is the control")
    split: list[int]
    attribution_window_h: int
    minimum_detectable_effect: float
    starts_at: datetime
    started_at: datetime = Field(description="when the shop created it")
    stopped_at: datetime | None = Field(description="when the shop stopped it; null before")
    status: Status = Field(
        description="scheduled before starts_at, active until stopped, stopped after"
    )

    @classmethod
    def of(cls, state: ExperimentState, now: datetime | None = None) -> Experiment:
        f = state.fields
        return cls(
            id=f.experiment_id,
            experiment_id=f.experiment_id,
            title=f.title,
            products=f.products,
            category=f.category,
            variants=[Variant(**v.model_dump()) for v in f.variants],
            split=f.split,
            attribution_window_h=f.attribution_window_h,
            minimum_detectable_effect=f.minimum_detectable_effect,
            starts_at=f.starts_at,
            started_at=state.started_at,
            stopped_at=state.stopped_at,
            status=state.status(now or datetime.now(UTC)),
        )


class Assignment(BaseModel):
    """What a visitor sees in an experiment (what the widget renders)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "experiment_id": "badge-test-1",
                    "variant": "friends",
                    "badge": "show",
                    "elements": ["friends", "bought"],
                    "min_count": None,
                    "status": "active",
                }
            ]
        }
    )

    experiment_id: str
    variant: str
    badge: Literal["show", "none"] = Field(description="none: render no badge (a control)")
    elements: list[BadgeElement] | None = Field(description="null: the widget's default")
    min_count: int | None = Field(description="null: the widget's default")
    status: Status

    @classmethod
    def of(cls, state: ExperimentState, variant: ExperimentVariant) -> Assignment:
        return cls(
            experiment_id=state.experiment_id,
            variant=variant.name,
            badge=variant.badge,
            elements=variant.elements,
            min_count=variant.min_count,
            status=state.status(),
        )


# --- beacons ------------------------------------------------------------------------------------

BeaconKind = Literal["impression", "click", "dismiss"]


class BeaconEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: BeaconKind = Field(
        description="impression: the badge (or a control's empty place) was at least half "
        "visible; click; dismiss: the visitor closed it"
    )
    product_id: Identifier
    experiment_id: Identifier | None = Field(
        default=None, description="the experiment the visitor saw the product's badge in"
    )
    variant: VariantName | None = Field(
        default=None, description="the visitor's assignment in it (with experiment_id only)"
    )
    at: UtcDatetime = Field(
        description="when it happened in the browser, with a zone; at most 5 min in the future "
        "and 7 days old"
    )


class BeaconIn(BaseModel):
    """A batch of badge interactions from one visitor (``navigator.sendBeacon``: the JSON may
    come as ``text/plain``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "visitor_id": "v-3f9a0c1b7e2d4a6f",
                    "events": [
                        {
                            "kind": "impression",
                            "product_id": "cup-espresso",
                            "experiment_id": "badge-test-1",
                            "variant": "friends",
                            "at": "2026-12-01T10:00:00.123Z",
                        }
                    ],
                }
            ]
        },
    )

    visitor_id: VisitorId = Field(
        description="the widget's pseudonymous visitor id (8..64 of A-Z a-z 0-9 _ -)"
    )
    events: list[BeaconEvent] = Field(min_length=1)


class BeaconAccepted(BaseModel):
    accepted: int = Field(description="events the broker acknowledged (all of the beacon's)")
