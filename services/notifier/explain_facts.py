"""The facts an explanation is made of (what ``explain.lua`` returns, as dataclasses) and the pure
functions that turn them into the counted events and the excluded ones with their reason: one
per kind of figure (buyers, reviews, shares, questions). No I/O here, so every rule of
:mod:`services.notifier.explain` can be unit-tested on plain values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: a user id -> its pseudonymous ref (:class:`services.notifier.explain.UserRefs`)
Refs = Callable[[str], str]
#: a question figure's bit -> why a question without it is left out
_QUESTION_MISSES = {2: "unanswered", 4: "no_buyer_answer"}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


# --- facts (what the read script returns) and the pure functions over them ------------------------


@dataclass(frozen=True)
class Purchase:
    order_id: str
    ms: int
    event_id: str | None


@dataclass(frozen=True)
class Refunded:
    order_id: str
    ms: int
    event_id: str | None
    cancelled: bool


@dataclass(frozen=True)
class BuyerFacts:
    """One user's purchases of the product: ``latest`` is their score in ``buyers:{p}`` (None:
    no kept purchase), ``kept`` their kept orders (``ub:{p}|{u}``), ``refunded`` the others."""

    user: str
    latest: int | None
    kept: tuple[Purchase, ...] = ()
    refunded: tuple[Refunded, ...] = ()

    @property
    def score(self) -> int:
        """Where the user sorts in a sequence: latest kept purchase, else latest refunded one."""
        if self.latest is not None:
            return self.latest
        return max((r.ms for r in self.refunded), default=0)


@dataclass(frozen=True)
class ReviewFacts:
    user: str
    live: bool
    rating: int
    ms: int
    event_id: str | None
    verified: bool  # ``vf``: counted as verified now


@dataclass(frozen=True)
class ShareFacts:
    share_id: str
    user: str
    channel: str
    ms: int
    event_id: str | None


@dataclass(frozen=True)
class QuestionFacts:
    question_id: str
    user: str | None
    ms: int
    event_id: str | None
    counted: bool  # the figure's bit is set in the question's ``c``


Entry = dict[str, Any]


def _purchase(p: Purchase, user_ref: str) -> Entry:
    return {
        "event_id": p.event_id,
        "occurred_at": iso(p.ms),
        "user_ref": user_ref,
        "kind": "purchase",
        "order_id": p.order_id,
    }


def _refund(r: Refunded, user_ref: str) -> Entry:
    entry = _purchase(Purchase(r.order_id, r.ms, r.event_id), user_ref)
    return {**entry, "reason": "refunded", "cancelled": r.cancelled}


def _hidden(event_id: str | None, reason: str) -> Entry:
    """An excluded event of a user who is not to be shown: the event id and the reason only."""
    return {"event_id": event_id, "reason": reason}


def explain_buyers(
    buyers: Sequence[BuyerFacts],
    refs: Refs,
    *,
    window_start: int | None = None,
    counted: frozenset[str] | set[str] | None = None,
) -> tuple[list[Entry], list[Entry]]:
    """``bought.*`` (``window_start``: a buyer counts when their latest kept purchase is at or
    after it) or ``friends_bought`` (``counted``: the friends the served count is made of; the
    others are shown as event id and reason only). Each counted buyer is one event: their
    latest kept purchase (ties: the smallest order id)."""
    friends = counted is not None
    events: list[Entry] = []
    excluded: list[Entry] = []
    for buyer in buyers:
        kept = sorted(buyer.kept, key=lambda p: (-p.ms, p.order_id))
        if friends:
            is_counted = buyer.user in counted  # type: ignore[operator]
        else:
            is_counted = buyer.latest is not None and buyer.latest >= (window_start or 0)
        ref = refs(buyer.user) if is_counted or not friends else ""
        if kept:
            first, rest = kept[0], kept[1:]
            if is_counted:
                events.append(_purchase(first, ref))
                excluded += [{**_purchase(p, ref), "reason": "repeat_purchase"} for p in rest]
            elif friends:
                excluded += [_hidden(p.event_id, "no_consent") for p in kept]
            else:
                excluded += [{**_purchase(p, ref), "reason": "outside_window"} for p in kept]
        for r in sorted(buyer.refunded, key=lambda r: (-r.ms, r.order_id)):
            excluded.append(_refund(r, ref) if ref else _hidden(r.event_id, "refunded"))
    return events, excluded


def explain_reviews(
    reviews: Sequence[ReviewFacts], refs: Refs, *, verified: bool
) -> tuple[list[Entry], list[Entry]]:
    """``reviews.count`` (live reviews) or the verified figures (live reviews whose ``vf`` is 1).
    A deleted review is listed by its deletion's event."""
    events: list[Entry] = []
    excluded: list[Entry] = []
    for r in reviews:
        entry: Entry = {
            "event_id": r.event_id,
            "occurred_at": iso(r.ms),
            "user_ref": refs(r.user),
            "kind": "review",
        }
        if not r.live:
            excluded.append({**entry, "reason": "deleted"})
            continue
        entry |= {"rating": r.rating, "verified": r.verified}
        if verified and not r.verified:
            excluded.append({**entry, "reason": "not_verified"})
        else:
            events.append(entry)
    return events, excluded


def explain_shares(
    shares: Sequence[ShareFacts], refs: Refs, *, window_start: int | None = None
) -> tuple[list[Entry], list[Entry]]:
    """Shares (already filtered by channel for a by-channel figure); with a window, older ones
    are excluded as ``outside_window``."""
    events: list[Entry] = []
    excluded: list[Entry] = []
    for s in shares:
        entry: Entry = {
            "event_id": s.event_id,
            "occurred_at": iso(s.ms),
            "user_ref": refs(s.user),
            "kind": "share",
            "share_id": s.share_id,
            "channel": s.channel,
        }
        if window_start is not None and s.ms < window_start:
            excluded.append({**entry, "reason": "outside_window"})
        else:
            events.append(entry)
    return events, excluded


def explain_questions(
    questions: Sequence[QuestionFacts], refs: Refs, *, bit: int
) -> tuple[list[Entry], list[Entry]]:
    """Visible questions; those without the figure's bit are excluded with its reason."""
    events: list[Entry] = []
    excluded: list[Entry] = []
    for q in questions:
        entry: Entry = {
            "event_id": q.event_id,
            "occurred_at": iso(q.ms),
            "user_ref": refs(q.user) if q.user else None,
            "kind": "question",
            "question_id": q.question_id,
        }
        if q.counted:
            events.append(entry)
        elif bit in _QUESTION_MISSES:
            excluded.append({**entry, "reason": _QUESTION_MISSES[bit]})
    return events, excluded


# --- the read script's reply (``explain.lua``) to facts -------------------------------------------


def as_list(value: Any) -> list:
    """cjson encodes an empty Lua table as ``{}``."""
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_ms(value: Any) -> int:
    return int(float(value))


def buyer_facts(raw: dict) -> BuyerFacts:
    return BuyerFacts(
        user=raw["u"],
        latest=as_ms(raw["s"]) if raw.get("s") not in (None, False) else None,
        kept=tuple(Purchase(o, as_ms(ms), as_str(eid)) for o, ms, eid in as_list(raw.get("kept"))),
        refunded=tuple(
            Refunded(o, as_ms(ts), as_str(eid), bool(cancelled))
            for o, ts, eid, cancelled in as_list(raw.get("gone"))
        ),
    )
