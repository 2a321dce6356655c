"""The catalog's promotion table, built from ``catalog.promotions`` beside the product table.

The catalog is the topic's only writer and keeps no database: like its products, its promotions
are a view rebuilt from the topic on every start, and every write answers once that view applied
it (read-your-writes). The table follows the contract's rules, so it agrees with the stream
processor whatever order the records come in:

- ``promotion.defined`` creates or changes a promotion; the newest ``(occurred_at, event_id)``
  wins (a single writer publishes them in that order anyway);
- ``promotion.ended`` ends it for good at its ``occurred_at`` (the earliest such event counts);
  the promotion stays readable, with status ``ended``. A definition that arrives after its end
  changes the fields but does not reopen it.

Status is read by wall clock: ``scheduled`` before ``starts_at``, ``active`` until ``ends_at``
(or an earlier end), ``ended`` after.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from contracts import codec
from contracts.events import PromotionDefined, PromotionEnded, PromotionFields
from socialproof.topicview import Record

Status = Literal["scheduled", "active", "ended"]
STATUSES: tuple[Status, ...] = ("scheduled", "active", "ended")


@dataclass(frozen=True)
class PromotionState:
    """A promotion as the catalog knows it: its newest definition and when the shop ended it."""

    fields: PromotionFields
    #: occurred_at of the first ``promotion.ended`` (the shop's DELETE), None while not ended
    ended_at: datetime | None = None

    @property
    def promotion_id(self) -> str:
        return self.fields.promotion_id

    def status(self, now: datetime) -> Status:
        if self.ended_at is not None or now >= self.fields.ends_at:
            return "ended"
        return "scheduled" if now < self.fields.starts_at else "active"


class PromotionTable:
    """promotion_id -> :class:`PromotionState`; feed it the records of ``catalog.promotions``."""

    def __init__(self) -> None:
        #: promotion_id -> (newest definition, its (occurred_at, event_id))
        self._defined: dict[str, tuple[PromotionFields, tuple[datetime, uuid.UUID]]] = {}
        #: promotion_id -> when the shop ended it (kept even before its definition arrives)
        self._ended: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._defined)

    def get(self, promotion_id: str) -> PromotionState | None:
        found = self._defined.get(promotion_id)
        if found is None:
            return None
        return PromotionState(found[0], self._ended.get(promotion_id))

    def all(self) -> list[PromotionState]:
        """Every promotion, by id."""
        return [
            PromotionState(fields, self._ended.get(pid))
            for pid, (fields, _) in sorted(self._defined.items())
        ]

    def apply(self, record: Record) -> None:
        if record.value is None:  # the topic is not compacted; a stray tombstone changes nothing
            return
        event = codec.decode(record.value)
        if isinstance(event, PromotionDefined):
            pid = event.payload.promotion_id
            order = (event.occurred_at, event.event_id)
            current = self._defined.get(pid)
            if current is None or order > current[1]:
                self._defined[pid] = (event.payload, order)
        elif isinstance(event, PromotionEnded):
            pid = event.payload.promotion_id
            earlier = self._ended.get(pid)
            if earlier is None or event.occurred_at < earlier:
                self._ended[pid] = event.occurred_at
