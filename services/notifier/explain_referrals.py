"""Explain ``bought_via_shares.24h`` / ``.7d``: the buyers credited to a friend's share link, and
the referred purchases that credit no one (or someone else), with the reason.

The served number is ``ZCOUNT {ns}:via:{p} now-window +inf`` (:mod:`services.notifier.proof`):
the distinct buyers whose *credited* purchase of the product (``{ns}:credit:{p}|{b}``, the
first touch of ``services/counters/referrals.lua``) is in the window. Each counted buyer is one
event: that purchase (``order_id``, its event id and time, the buyer's ``user_ref``) with the
share it came through (``share_id``, the sharer's ``sharer_ref``, ``shared_at``,
``share_event_id``). Refs are the pseudonyms of :class:`services.notifier.explain.UserRefs`;
link tokens are not shown (whoever holds one can refer purchases with it).

The excluded events are the other *referred* purchases (those carrying a link token, facts
``{ns}:ro:{order}``) of the product by the same buyers, and by the product's other buyers, each
with the first reason that applies:

- ``outside_window``: the buyer's credited purchase is older than the window;
- ``refunded``: refunds left nothing of the line, or the order was cancelled (``cancelled``
  says which); a refund moves the credit to the buyer's next referred purchase, if any;
- ``unknown_link``: no share with that link is known: never shared, not arrived yet, or its
  sharer was erased (an erasure leaves no trace to tell these apart);
- ``self_referral``: bought through the buyer's own link;
- ``not_first_touch``: a kept purchase through another link (or the same one) after the buyer's
  credited purchase, which keeps the credit (``credited_order_id``).

Purchases without a link token are not events of this figure. As for ``bought.*``, a buyer whose
every purchase of the product was refunded is in no index of the product and is not listed; an
erased buyer's referred purchases are deleted with them and are gone from the explanation as from
the figure. The sequence (``explain.lua``, kind ``v``) has two phases: the credited buyers of
``via:{p}``, newest credited purchase first (down to the window's start when the excluded events
are not wanted, so both ways list the same events in the same order); then the product's other
buyers (``buyers:{p}``, newest purchase first) that have referred purchases of it, walked at most
:data:`WALK_BUDGET` buyers a page (a page may hold fewer than ``limit`` buyers and still go on).

Sharded (issue #16, :mod:`contracts.layout`): the referral facts (``via``, ``credit``, ``ro``,
``link``, the referred orders' keptness) are in the referrals shard, the product's buyers
(``buyers:{p}``, which phase 2 walks, ordered by each buyer's latest kept purchase of any kind) in
the product's shard; the referrals shard's own ``buyers:{p}`` holds only the buyers of referred
purchases, by those, so it would miss a buyer whose referred purchases were all refunded and order
the rest differently. So phase 1 is one script in the referrals shard, as on one Redis, and phase
2 is walked here exactly as the script walks it (:func:`walk_other_buyers`: the same positions,
ties and budget): a chunk of the product shard's buyers (``ZREVRANGEBYSCORE``), then their facts
from the referrals shard (``explain.lua`` kind ``V``), two round trips a chunk of
max(``limit``, :data:`WALK_CHUNK`) buyers (so at most 1 + 2 x 5 a page, where one Redis reads a
page in one; the buyers of a chunk after the page's last are read for nothing). The page's value still comes from one read (the
first), but the chunks are separate reads: a purchase landing between them can show in a page
without its value; a later page then sees the new value and answers ``FigureChanged``, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.notifier.explain_facts import Entry, Refs, as_list, as_str, iso

#: buyers walked per page at most (most of a product's buyers may have no referred purchase)
WALK_BUDGET = 1000
#: the product shard's buyers read per chunk of the cross-shard walk, at least
WALK_CHUNK = 200
FIRST_PHASE = 1  # via:{p}
OTHER_BUYERS = 2  # buyers:{p} not in via:{p}


@dataclass(frozen=True)
class Referred:
    """A referred purchase of the product (``ro:{order}``) and what decides it."""

    order_id: str
    ms: int
    event_id: str | None
    kept: bool  # the line is in ``ub:{p}|{buyer}``
    cancelled: bool
    sharer: str | None = None  # ``link:{token}``'s sharer, None: the link is not known
    share_id: str | None = None
    shared_ms: int | None = None
    share_event_id: str | None = None


@dataclass(frozen=True)
class ReferredBuyer:
    """A buyer's referred purchases of the product; ``credited`` the order credited now (None:
    none) and ``via`` its score in ``via:{p}`` (None: not walked from via)."""

    user: str
    credited: str | None
    via: int | None
    orders: tuple[Referred, ...]


def explain_via(
    buyers: Sequence[ReferredBuyer], refs: Refs, *, window_start: int
) -> tuple[list[Entry], list[Entry]]:
    """``(events, excluded)``: a buyer counts when walked from via with a score at or after
    ``window_start``, by their credited purchase; every other referred purchase is excluded with
    the first reason that applies (module docstring)."""
    events: list[Entry] = []
    excluded: list[Entry] = []
    for buyer in buyers:
        ref = refs(buyer.user)
        ordered = sorted(
            buyer.orders, key=lambda r: (r.order_id != buyer.credited, -r.ms, r.order_id)
        )
        for r in ordered:
            entry: Entry = {
                "event_id": r.event_id,
                "occurred_at": iso(r.ms),
                "user_ref": ref,
                "kind": "purchase",
                "order_id": r.order_id,
            }
            if r.sharer is not None:
                entry |= {
                    "share_id": r.share_id,
                    "sharer_ref": refs(r.sharer),
                    "shared_at": None if r.shared_ms is None else iso(r.shared_ms),
                    "share_event_id": r.share_event_id,
                }
            if r.order_id == buyer.credited and buyer.via is not None:
                if buyer.via >= window_start:
                    events.append(entry)
                else:
                    excluded.append({**entry, "reason": "outside_window"})
            elif not r.kept:
                excluded.append({**entry, "reason": "refunded", "cancelled": r.cancelled})
            elif r.sharer is None:
                excluded.append({**entry, "reason": "unknown_link"})
            elif r.sharer == buyer.user:
                excluded.append({**entry, "reason": "self_referral"})
            else:
                excluded.append(
                    {**entry, "reason": "not_first_touch", "credited_order_id": buyer.credited}
                )
    return events, excluded


def _ms(value: Any) -> int | None:
    return None if value in (None, False, "") else int(float(value))


def referred_buyer(raw: dict) -> ReferredBuyer:
    """One item of the read script's reply (``explain.lua``, kind ``v``)."""
    return ReferredBuyer(
        user=raw["u"],
        credited=as_str(raw.get("credit")),
        via=_ms(raw.get("s")),
        orders=tuple(
            Referred(
                str(o), _ms(ts) or 0, as_str(eid), bool(kept), bool(cancelled), as_str(sharer),
                as_str(sid), _ms(shared), as_str(seid),
            )
            for o, ts, eid, kept, cancelled, sharer, sid, shared, seid in as_list(raw.get("orders"))
        ),
    )


#: (score, ties given, phase) where a page starts; None: the first page
Start = tuple[str, int, int] | None
#: ``(from score, ties to skip, count)`` -> the product shard's ``buyers:{p}`` members and their
#: scores (as Redis writes them), newest first: ``ZREVRANGEBYSCORE … -inf WITHSCORES LIMIT``
BuyersPage = Callable[[str, int, int], Awaitable[list[tuple[str, str]]]]


async def walk_other_buyers(
    read: Callable[..., Awaitable[dict]], buyers: BuyersPage, ns: str, product_id: str,
    start: tuple[str, int], limit: int,
) -> tuple[list[dict], tuple[str, int] | None]:
    """Phase 2 across shards: the buyers of ``buyers`` from ``start`` that are not in via and have
    referred purchases, until ``limit`` of them or :data:`WALK_BUDGET` walked; and the position
    after the last one walked (None: nothing after it). The same walk as ``explain.lua``'s."""
    items: list[dict] = []
    walked = 0
    cur, ties = start
    while True:
        # at least WALK_CHUNK buyers a chunk (those after the page's last are read for nothing,
        # but a page of one buyer among many without referred purchases takes few round trips)
        count = min(max(limit, WALK_CHUNK), WALK_BUDGET - walked)
        page = await buyers(cur, ties, count + 1)  # one more: is there anything after the page
        if not page:
            return items, None
        looked = page[:count]
        raw = await read("V", ns, product_id, *(member for member, _ in looked))
        found = as_list(raw.get("items"))
        for i, ((_, score), item) in enumerate(zip(looked, found, strict=True)):
            if score == cur:
                ties += 1
            else:
                cur, ties = score, 1
            walked += 1
            if item:
                items.append(item)
            if len(items) >= limit or walked >= WALK_BUDGET:
                return items, ((cur, ties) if i + 1 < len(page) else None)
        if len(page) <= count:
            return items, None


async def read_bought_via_shares(
    read: Callable[..., Awaitable[dict]], refs: Refs, ns: str, product_id: str, *,
    window_ms: int, at: int, start: Start, limit: int, full: bool,
    buyers: BuyersPage | None = None,
) -> tuple[int, list[Entry], list[Entry], tuple[str, int, int] | None]:
    """One page: ``(value, events, excluded, next start)``; ``read`` runs ``explain.lua`` in the
    shard of prefix ``ns`` (the referrals shard); ``buyers`` reads the product's buyers when they
    are in another shard (None: in the same, and the script walks them)."""
    window_start = at - window_ms
    score, skip, phase = start if start is not None else ("+inf", 0, FIRST_PHASE)
    low = "-inf" if full or phase == OTHER_BUYERS else str(window_start)
    raw = await read(
        "v", ns, product_id, score, skip, limit, low, window_start, int(full), phase, WALK_BUDGET,
        int(buyers is not None),
    )
    items = as_list(raw.get("items"))
    after = raw.get("next")
    walk_from = raw.get("walk")
    if buyers is not None and isinstance(walk_from, list) and len(walk_from) == 2:
        more, after = await walk_other_buyers(
            read, buyers, ns, product_id, (str(walk_from[0]), int(walk_from[1])),
            limit - len(items),
        )
        items = [*items, *more]
    found = [referred_buyer(item) for item in items]
    events, excluded = explain_via(found, refs, window_start=window_start)
    position = None
    if isinstance(after, list | tuple) and len(after) == 2:
        position = (str(after[0]), int(after[1]), int(raw.get("phase") or FIRST_PHASE))
    return int(raw["value"]), events, excluded, position
