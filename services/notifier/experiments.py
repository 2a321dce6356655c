"""A/B experiments on badges as the notifier knows them: the definitions, and who sees what.

The notifier is the only writer of ``storefront.experiments`` (one partition) and keeps no
database: like the catalog's promotions, the experiments are a view rebuilt from the topic on
every start (:class:`socialproof.topicview.TopicView`), and every write answers once that view
applied it (read-your-writes). Every notifier process reads the topic whole, so all of them know
the same experiments and assign a visitor alike. The rules, so that order of arrival and replays
never change the answer:

- ``experiment.started`` defines an experiment. Definitions are immutable (changing a split
  mid-way biases the comparison): the first one of an id in the log wins and a later one with
  the same id is ignored. ``started_at`` is that event's time.
- ``experiment.stopped`` stops it for good at its ``occurred_at`` (the earliest counts, also when
  it arrives before its definition); the experiment stays readable, with status ``stopped``.

Status by wall clock: ``scheduled`` before the definition's ``starts_at``, ``active`` from then
until stopped, ``stopped`` after.

Assignment (:func:`assign`) is a pure function of (experiment, visitor): ``bucket =
int.from_bytes(sha256(f"{experiment_id}|{visitor_id}")[:8], "big") % 10000``, and the variants take
consecutive ranges of ``split[i] * 100`` buckets in order (the first variant is the control). No
state, so every process, a restart and the analysis agree; sha256 spreads visitor ids evenly
(tests/unit/test_experiment_assignment.py checks 10,000 visitors against the binomial bounds).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from contracts import codec
from contracts.events import (
    ExperimentFields,
    ExperimentStarted,
    ExperimentStopped,
    ExperimentVariant,
)
from contracts.topics import EXPERIMENTS
from socialproof.settings import Settings
from socialproof.topicview import Record, TopicView

Status = Literal["scheduled", "active", "stopped"]
STATUSES: tuple[Status, ...] = ("scheduled", "active", "stopped")
#: assignment resolution: a split percentage is this many buckets of 1/10,000 each
BUCKETS = 10_000


def bucket(experiment_id: str, visitor_id: str) -> int:
    """The visitor's bucket in the experiment, 0..9999 (see the module docstring)."""
    digest = hashlib.sha256(f"{experiment_id}|{visitor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(experiment: ExperimentFields, visitor_id: str) -> ExperimentVariant:
    """The variant ``visitor_id`` sees in ``experiment``: deterministic, the same everywhere."""
    b = bucket(experiment.experiment_id, visitor_id)
    upper = 0
    for variant, percent in zip(experiment.variants, experiment.split, strict=True):
        upper += percent * (BUCKETS // 100)
        if b < upper:
            return variant
    # splits sum to 100 (the API refuses others); a definition that does not falls to the last
    return experiment.variants[-1]


def covers(experiment: ExperimentFields, product_id: str, category: str | None) -> bool:
    """Whether the experiment's scope (its products, or its category) takes in the product."""
    if experiment.products is not None:
        return product_id in experiment.products
    return category is not None and category == experiment.category


@dataclass(frozen=True)
class ExperimentState:
    """An experiment as the notifier knows it: its definition and when the shop stopped it."""

    fields: ExperimentFields
    #: occurred_at of its ``experiment.started`` (when the shop created it)
    started_at: datetime
    #: occurred_at of the first ``experiment.stopped``; None while not stopped
    stopped_at: datetime | None = None
    #: event id of the definition that won (a create compares it with its own: see the API)
    started_event_id: uuid.UUID | None = None

    @property
    def experiment_id(self) -> str:
        return self.fields.experiment_id

    def status(self, now: datetime | None = None) -> Status:
        if self.stopped_at is not None:
            return "stopped"
        now = datetime.now(UTC) if now is None else now
        return "scheduled" if now < self.fields.starts_at else "active"

    @property
    def active(self) -> bool:
        """Assigning visitors now: started (``starts_at`` reached) and not stopped."""
        return self.status() == "active"

    def covers(self, product_id: str, category: str | None) -> bool:
        return covers(self.fields, product_id, category)

    def window_s(self) -> int:
        return self.fields.attribution_window_h * 3600


class ExperimentRegistry:
    """experiment_id -> :class:`ExperimentState`, over a view of ``storefront.experiments``.

    ``start()``/``stop()`` run the view (the app's lifespan), ``check()`` is its readiness,
    ``view`` is there for writes (``wait_delivered``) and lookups after ``sync``."""

    def __init__(self, settings: Settings, *, name: str = "experiments") -> None:
        #: experiment_id -> (the first definition, its event time, its event id)
        self._defined: dict[str, tuple[ExperimentFields, datetime, uuid.UUID]] = {}
        #: experiment_id -> when the shop stopped it (kept even before its definition arrives)
        self._stopped: dict[str, datetime] = {}
        self.view = TopicView(settings, [EXPERIMENTS], self.apply, name=name)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.view.start()

    async def stop(self) -> None:
        await self.view.stop()

    async def check(self) -> None:
        await self.view.check()

    # --- reads ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._defined)

    def get(self, experiment_id: str) -> ExperimentState | None:
        found = self._defined.get(experiment_id)
        if found is None:
            return None
        fields, started_at, event_id = found
        return ExperimentState(fields, started_at, self._stopped.get(experiment_id), event_id)

    def all(self) -> list[ExperimentState]:
        """Every experiment, by id."""
        return [s for s in (self.get(eid) for eid in sorted(self._defined)) if s is not None]

    def needs_category(self, product_id: str) -> bool:
        """Whether :meth:`active_for` needs the product's category to answer: some active
        experiment is scoped by category and none lists the product itself."""
        active = [s for s in self.all() if s.active]
        if any(s.fields.products is not None and product_id in s.fields.products for s in active):
            return False
        return any(s.fields.category is not None for s in active)

    def active_for(self, product_id: str, category: str | None) -> ExperimentState | None:
        """The earliest-started active experiment whose scope covers the product (a visitor is
        in at most one experiment per product, so experiments never overlap on a badge)."""
        candidates = [s for s in self.all() if s.active and s.covers(product_id, category)]
        if not candidates:
            return None
        return min(candidates, key=lambda s: (s.fields.starts_at, s.started_at, s.experiment_id))

    @staticmethod
    def assign(state: ExperimentState, visitor_id: str) -> ExperimentVariant:
        return assign(state.fields, visitor_id)

    # --- the view's records ---------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        if record.value is None:  # the topic is not compacted; a stray tombstone changes nothing
            return
        event = codec.decode(record.value)
        if isinstance(event, ExperimentStarted):
            eid = event.payload.experiment_id
            if eid not in self._defined:  # immutable: the first definition in the log wins
                self._defined[eid] = (event.payload, event.occurred_at, event.event_id)
        elif isinstance(event, ExperimentStopped):
            eid = event.payload.experiment_id
            earlier = self._stopped.get(eid)
            if earlier is None or event.occurred_at < earlier:
                self._stopped[eid] = event.occurred_at
