"""Explain this number: the events that make up a figure the notifier serves, and the ones left out.

For a product and a figure named by its path in the proof answer (``bought.24h``,
``reviews.verified_count``, ``shares.by_channel.email``, ``bought_via_shares.7d``,
``friends_bought`` for a viewer, …; see
:func:`parse_figure`) an explanation is ``value`` (the number the proof answer serves at that
instant), ``events`` (exactly the events counted: ``len(events)`` over all pages equals
``value``) and ``excluded`` (events of the figure's facts that are not counted, each with its
reason). It is computed from the same facts and counters the served number comes from
(:mod:`contracts.views`), read in one Lua script per page, so value and events agree (on a
sharded store, in the shard of the figure's facts: :class:`Explainer`; ``bought_via_shares``'
second phase reads two shards, :mod:`services.notifier.explain_referrals` says what that costs).

The parts:

- :func:`parse_figure`: a figure path to a :class:`Figure` (``UnknownFigure`` names the problem).
- The pure functions :func:`explain_buyers`, :func:`explain_reviews`, :func:`explain_shares`,
  :func:`explain_questions`: facts read (plain dataclasses) to ``(events, excluded)``; they live
  in :mod:`services.notifier.explain_facts`. ``bought_via_shares.*`` (referral credits, its
  reasons ``self_referral``, ``unknown_link``, ``not_first_touch``, …) is
  :mod:`services.notifier.explain_referrals`.
- :class:`Explainer`: reads the facts (``explain.lua``), pages, and checks that a later page still
  sees the value of the first (:class:`FigureChanged` otherwise). Used by the notifier's
  ``GET /v1/proof/products/{id}/explain`` and by ``socialproof explain``.

What an event shows: ``event_id`` (null for facts written before the processor kept event ids of
orders and shares; a rebuild fills them), ``occurred_at`` (event time), ``user_ref``, a stable
pseudonym (HMAC-SHA256 of the user id under a key derived from the viewer-token secret, or the
service token without one: :func:`ref_key`), the kind and the fact's own id (``order_id``,
``share_id``, ``question_id``). Never a user id, never a name. In ``friends_bought``, friends who
do not share purchases with friends (and friends not counted) show only ``event_id`` and
``reason``.

Reasons an event is excluded, all derived from facts in the store:

- ``outside_window``: a buyer's latest kept purchase (or a share) is older than the window;
- ``repeat_purchase``: a counted buyer's other kept purchases (a buyer counts once, by their
  latest kept purchase);
- ``refunded``: an order line whose refunds leave nothing, or a cancelled order (``cancelled``
  says which). Listed for the users the figure's facts reach: buyers with a kept purchase of the
  product (``bought.*``) and the viewer's friends (``friends_bought``). A user whose every
  purchase of the product was refunded is in no index of the product, so ``bought.*`` cannot
  list them (they are not counted either);
- ``no_consent``: in ``friends_bought``, a friend with a kept purchase who does not share
  purchases with friends;
- ``not_verified``: for verified review figures, a live review whose author has no kept purchase;
- ``deleted``: a review its author deleted (the deletion's event);
- ``unanswered`` / ``no_buyer_answer``: for ``questions.answered`` / ``answered_by_buyers``, a
  visible question without a visible answer / without one by a verified buyer.

Not reported, because the store keeps no trace of them: ``erased`` (an erasure deletes the user's
facts and takes them out of every view; only the set of erased user ids stays, which is per user,
not per product, and would name them) and ``duplicate`` (a duplicate or redelivered event finds
its fact recorded already and changes nothing, so nothing counts them). An erased user's events
disappear from explanations like from the figures.

Paging: ``limit`` items of the figure's sequence per page, newest first; the opaque cursor pins
the instant (windows are evaluated at the first page's ``as_of``) and the position. If the value
read for a later page differs from the first page's, the facts changed in between and the pages
would not add up: :class:`FigureChanged` (the API answers 409; start again). Costs: ``bought.*``,
``shares.*`` and ``questions.*`` walk their sorted set from the cursor (a page costs its own
size); ``friends_bought`` reads the viewer's friends whole; ``reviews.*`` reads every review fact of
the product, found through the per-product index ``{ns}:reviewers:{product}`` in the same script
as the counts (so the live ones add up to the value by construction). Data written before that
index existed has no ``reviewers:{product}`` set (its reviews are counted but not listed) until
a ``socialproof replay rebuild`` fills a namespace anew, as with the event ids above and the
reviews' ``vf`` (verified) fields.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import redis.asyncio as aioredis
from pydantic import SecretStr

from contracts.views import BOUGHT_WINDOWS_MS, SHARE_CHANNELS, SHARE_WINDOWS_MS, Keys
from services.notifier.explain_facts import (  # noqa: F401 (facts re-exported for callers)
    BuyerFacts,
    Entry,
    Purchase,
    QuestionFacts,
    Refs,
    Refunded,
    ReviewFacts,
    ShareFacts,
    as_list,
    as_ms,
    as_str,
    buyer_facts,
    explain_buyers,
    explain_questions,
    explain_reviews,
    explain_shares,
    iso,
)
from services.notifier.explain_referrals import (
    OTHER_BUYERS,
    BuyersPage,
    read_bought_via_shares,
)
from services.notifier.proof import VIA_WINDOWS_MS, ProofReader

T = TypeVar("T")
Kind = Literal["bought", "shares", "reviews", "questions", "friends_bought", "via"]
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: a filtered walk (shares by channel, questions by answer state) reads at most this many
#: sequence items per page, so a page may hold fewer than ``limit`` events and still go on
WALK_BUDGET = 2000

_QUESTION_BITS = {"count": 1, "answered": 2, "answered_by_buyers": 4}


# --- figures -------------------------------------------------------------------------------------


class UnknownFigure(ValueError):
    """The figure path names nothing the proof answer serves; the message says what does."""


@dataclass(frozen=True)
class Figure:
    path: str
    kind: Kind
    window_ms: int | None = None  # bought / shares / bought_via_shares windows
    channel: str | None = None  # shares.by_channel.{channel}
    verified: bool = False  # reviews.verified_count
    bit: int = 0  # questions: which bit of the question's ``c``

    @property
    def needs_viewer(self) -> bool:
        return self.kind == "friends_bought"


FIGURES_HELP = (
    "bought.1h, bought.24h, bought.7d, reviews.count, reviews.verified_count, shares.1h, "
    "shares.24h, shares.total, shares.by_channel.<channel>, questions.count, questions.answered, "
    "questions.answered_by_buyers, bought_via_shares.24h, bought_via_shares.7d, friends_bought "
    "(with a viewer)"
)


def parse_figure(path: str) -> Figure:
    """``bought.24h`` -> Figure(kind="bought", window_ms=86_400_000), …"""
    parts = path.strip().split(".")
    head, rest = parts[0], parts[1:]
    if head == "bought" and len(rest) == 1 and rest[0] in BOUGHT_WINDOWS_MS:
        return Figure(path, "bought", window_ms=BOUGHT_WINDOWS_MS[rest[0]])
    if head == "reviews" and rest in (["count"], ["verified_count"]):
        return Figure(path, "reviews", verified=rest[0] == "verified_count")
    if head == "shares" and len(rest) == 1 and rest[0] in SHARE_WINDOWS_MS:
        return Figure(path, "shares", window_ms=SHARE_WINDOWS_MS[rest[0]])
    if head == "shares" and rest == ["total"]:
        return Figure(path, "shares")
    if head == "shares" and len(rest) == 2 and rest[0] == "by_channel":
        if rest[1] not in SHARE_CHANNELS:
            raise UnknownFigure(
                f"unknown share channel {rest[1]!r}: one of {', '.join(SHARE_CHANNELS)}"
            )
        return Figure(path, "shares", channel=rest[1])
    if head == "questions" and len(rest) == 1 and rest[0] in _QUESTION_BITS:
        return Figure(path, "questions", bit=_QUESTION_BITS[rest[0]])
    if head == "bought_via_shares" and len(rest) == 1 and rest[0] in VIA_WINDOWS_MS:
        return Figure(path, "via", window_ms=VIA_WINDOWS_MS[rest[0]])
    if head == "friends_bought" and rest in ([], ["count"]):
        return Figure(path, "friends_bought")
    raise UnknownFigure(f"unknown figure {path!r}: one of {FIGURES_HELP}")


# --- user refs -----------------------------------------------------------------------------------

_REF_LABEL = b"socialproof explanation user refs v1"


def ref_key(viewer_token_secret: SecretStr | None, service_token: SecretStr | None) -> bytes:
    """The key of user refs: derived from the viewer-token secret, else from the service token
    (so the endpoint and ``socialproof explain`` with the same settings agree). A ref is never
    the raw id; rotating the secret changes every ref."""
    for secret in (viewer_token_secret, service_token):
        if secret is not None and secret.get_secret_value():
            return hmac.new(secret.get_secret_value().encode(), _REF_LABEL, hashlib.sha256).digest()
    raise ValueError("user refs need SOCIALPROOF_VIEWER_TOKEN_SECRET or SOCIALPROOF_SERVICE_TOKEN")


class UserRefs:
    """``refs(user_id)`` -> ``u_`` + 32 hex digits: a stable keyed hash, not reversible."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the user ref key must be at least 16 bytes")
        self._key = key
        self._memo: dict[str, str] = {}

    def __call__(self, user_id: str) -> str:
        ref = self._memo.get(user_id)
        if ref is None:
            if len(self._memo) > 100_000:
                self._memo.clear()
            digest = hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()
            ref = self._memo[user_id] = f"u_{digest[:32]}"
        return ref


# --- paging --------------------------------------------------------------------------------------


class InvalidCursor(ValueError):
    """The cursor is not one this figure's explanation gave."""


class FigureChanged(Exception):
    """The figure's value changed between pages: the pages would not add up; start again."""

    def __init__(self, was: int, now: int) -> None:
        super().__init__(
            f"the figure changed from {was} to {now} since the first page; start again without "
            "a cursor"
        )
        self.was, self.now = was, now


@dataclass(frozen=True)
class Position:
    """Where a page starts: after ``skip`` items scored ``score`` (a sequence sorts newest first
    by score, ties in a fixed order) in ``phase`` of the sequence (2: bought_via_shares' other
    buyers), read at ``at_ms``, where the first page read ``value``."""

    figure: str
    at_ms: int
    value: int
    score: str
    skip: int
    with_excluded: bool
    viewer: str | None = None  # the viewer's ref, never their id
    phase: int = 1

    def encode(self) -> str:
        raw = orjson.dumps(
            [self.figure, self.at_ms, self.value, self.score, self.skip,
             int(self.with_excluded), self.viewer, self.phase]
        )
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Position:
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            figure, at_ms, value, score, skip, with_excluded, viewer, *rest = raw
            float(score)
            (phase,) = rest or [1]  # cursors given before phases have none
            position = cls(
                str(figure), int(at_ms), int(value), str(score), int(skip), bool(with_excluded),
                None if viewer is None else str(viewer), int(phase),
            )
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise InvalidCursor("the cursor is malformed; pass `next` of the previous page") from None
        if position.skip < 0 or position.phase not in (1, 2):
            raise InvalidCursor("the cursor is malformed; pass `next` of the previous page")
        return position


def page_of(
    items: Sequence[T], score: Callable[[T], int], start: tuple[Any, ...] | None, limit: int
) -> tuple[list[T], tuple[str, int] | None]:
    """A page of ``items`` (sorted by ``score`` descending, ties in a fixed order) after
    ``start`` = (score, ties already given), and where the next page starts (None: the last)."""
    first = 0
    if start is not None:
        edge = float(start[0])
        first = sum(1 for item in items if score(item) > edge) + start[1]
    page = list(items[first : first + limit])
    if first + limit >= len(items) or not page:
        return page, None
    last = score(page[-1])
    ties = sum(1 for item in items[: first + limit] if score(item) == last)
    return page, (str(last), ties)


@dataclass
class Explanation:
    figure: str
    value: int
    as_of_ms: int
    events: list[Entry] = field(default_factory=list)
    excluded: list[Entry] = field(default_factory=list)
    next: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": self.value,
            "as_of": iso(self.as_of_ms),
            "events": self.events,
            "excluded": self.excluded,
            "next": self.next,
        }


# --- the read ------------------------------------------------------------------------------------

# The read script (services/notifier/lua/explain.lua); ARGV and the reply are described at the top of
# the file. Read once at import, as the counter store reads counters.lua: a wheel carries the .lua
# file beside this module.
EXPLAIN_LUA = (Path(__file__).parent / "lua" / "explain.lua").read_text(encoding="utf-8")


class Explainer:
    """Reads a figure's facts and explains them; the namespace and its shards are the reader's
    (``reader.layout``: it follows a rebuild's switch), and ``reviews.count`` follows
    ``SOCIALPROOF_REVIEWS_VERIFIED_ONLY`` as the proof answer does.

    Where (issue #16, :mod:`contracts.layout`): every figure but ``bought_via_shares`` is read in
    the product's shard (its facts are there, and the user facts friends_bought needs are
    replicated into it), one script per page as on one Redis; ``bought_via_shares`` in the
    referrals shard, its second phase walking the product shard's buyers
    (:mod:`services.notifier.explain_referrals`). Each call gets a key of its shard, so a Redis
    Cluster client routes it there."""

    def __init__(self, reader: ProofReader, refs: Refs) -> None:
        self.reader = reader
        self.redis: aioredis.Redis = reader.redis
        self.refs = refs
        self._script = self.redis.register_script(EXPLAIN_LUA)

    async def _read(self, kind: str, ns: str, product_id: str, *args: object) -> dict:
        """``explain.lua`` in the shard of prefix ``ns`` (the key routes it on a cluster)."""
        route = Keys(ns).buyers(product_id)
        reply = await self._script(keys=[route], args=[kind, ns, product_id, *args])
        return orjson.loads(reply)

    def _buyers_page(self, ns: str, product_id: str) -> BuyersPage:
        """The product's ``buyers:{p}`` in the shard of prefix ``ns``, a page at a time."""
        key = Keys(ns).buyers(product_id)

        async def page(start: str, skip: int, count: int) -> list[tuple[str, str]]:
            return await self.redis.zrevrangebyscore(
                key, start, "-inf", start=skip, num=count, withscores=True, score_cast_func=str
            )

        return page

    async def explain(
        self,
        product_id: str,
        figure: Figure,
        *,
        viewer_id: str | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
        with_excluded: bool = True,
        now_ms: int | None = None,
    ) -> Explanation:
        """One page of the explanation. Raises ``InvalidCursor`` and ``FigureChanged`` (a later
        page sees another value than the first)."""
        if figure.needs_viewer and not viewer_id:
            raise ValueError(f"{figure.path} needs a viewer")
        viewer_ref = self.refs(viewer_id) if figure.needs_viewer and viewer_id else None
        start: tuple[str, int, int] | None = None  # score, ties given, phase
        first: Position | None = None
        if cursor is not None:
            first = Position.decode(cursor)
            if first.figure != figure.path or first.viewer != viewer_ref:
                raise InvalidCursor("the cursor belongs to another figure, product page or viewer")
            if first.phase == OTHER_BUYERS and not (figure.kind == "via" and first.with_excluded):
                raise InvalidCursor("the cursor is malformed; pass `next` of the previous page")
            now_ms, with_excluded = first.at_ms, first.with_excluded
            start = (first.score, first.skip, first.phase)
        at = int(time.time() * 1000) if now_ms is None else now_ms
        limit = max(1, min(limit, MAX_LIMIT))
        layout = self.reader.layout
        read = {
            "bought": self._bought,
            "shares": self._shares,
            "questions": self._questions,
            "friends_bought": self._friends,
            "reviews": self._reviews,
            "via": self._via,
        }[figure.kind]
        value, events, excluded, after = await read(
            layout, product_id, figure, at, start, limit, with_excluded, viewer_id
        )
        if not with_excluded:
            excluded = []
        if first is not None and value != first.value:
            raise FigureChanged(first.value, value)
        next_cursor = None
        if after is not None:
            next_cursor = Position(
                figure.path, at, value, after[0], after[1], with_excluded, viewer_ref,
                after[2] if len(after) > 2 else 1,
            ).encode()
        return Explanation(figure.path, value, at, events, excluded, next_cursor)

    async def explain_all(
        self, product_id: str, figure: Figure, *, viewer_id: str | None = None,
        with_excluded: bool = True, now_ms: int | None = None, attempts: int = 3,
        limit: int = MAX_LIMIT,
    ) -> Explanation:
        """Every page at one instant, gathered (the CLI); starts again when the figure changes
        between pages, ``attempts`` times at most."""
        for attempt in range(attempts):
            whole: Explanation | None = None
            cursor: str | None = None
            try:
                while True:
                    page = await self.explain(
                        product_id, figure, viewer_id=viewer_id, cursor=cursor, limit=limit,
                        with_excluded=with_excluded, now_ms=now_ms,
                    )
                    if whole is None:
                        whole = page
                    else:
                        whole.events += page.events
                        whole.excluded += page.excluded
                    cursor = page.next
                    if cursor is None:
                        whole.next = None
                        return whole
            except FigureChanged:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # --- per kind: (value, events, excluded, next position); each reads the shard of its facts ---

    @staticmethod
    def _walk_args(start: tuple[str, int, int] | None, limit: int, low: str) -> list[object]:
        score, skip = start[:2] if start is not None else ("+inf", 0)
        return [score, skip, limit, low]

    async def _bought(self, layout, product_id, figure, at, start, limit, full, _viewer):
        ns = layout.product_prefix(product_id)
        window_start = at - figure.window_ms
        low = "-inf" if full else str(window_start)
        raw = await self._read(
            "b", ns, product_id, *self._walk_args(start, limit, low), window_start, int(full)
        )
        buyers = [buyer_facts(item) for item in as_list(raw.get("items"))]
        events, excluded = explain_buyers(buyers, self.refs, window_start=window_start)
        return int(raw["value"]), events, excluded, _position(raw.get("next"))

    async def _shares(self, layout, product_id, figure, at, start, limit, full, _viewer):
        ns = layout.product_prefix(product_id)
        window_start = at - figure.window_ms if figure.window_ms is not None else None
        low = str(window_start) if window_start is not None and not full else "-inf"
        raw = await self._read(
            "s", ns, product_id, *self._walk_args(start, limit, low),
            "" if window_start is None else window_start, figure.channel or "", WALK_BUDGET,
        )
        shares = [
            ShareFacts(sid, u or "", ch or "", as_ms(ms), as_str(eid))
            for sid, u, ch, ms, eid in as_list(raw.get("items"))
        ]
        events, excluded = explain_shares(shares, self.refs, window_start=window_start)
        return int(raw["value"]), events, excluded, _position(raw.get("next"))

    async def _questions(self, layout, product_id, figure, at, start, limit, full, _viewer):
        ns = layout.product_prefix(product_id)
        field_ = {1: "questions", 2: "answered", 4: "answered_by_buyers"}[figure.bit]
        raw = await self._read(
            "q", ns, product_id, *self._walk_args(start, limit, "-inf"), field_, figure.bit,
            WALK_BUDGET, int(full),
        )
        questions = [
            QuestionFacts(qid, as_str(u), as_ms(ms), as_str(eid), bool(counted))
            for qid, u, ms, eid, counted in as_list(raw.get("items"))
        ]
        events, excluded = explain_questions(questions, self.refs, bit=figure.bit)
        return int(raw["value"]), events, excluded, _position(raw.get("next"))

    async def _friends(self, layout, product_id, figure, at, start, limit, full, viewer):
        ns = layout.product_prefix(product_id)
        raw = await self._read("f", ns, product_id, viewer)
        counted = frozenset(as_list(raw.get("counted")))
        friends = [buyer_facts(item) for item in as_list(raw.get("items"))]
        if not full:
            friends = [f for f in friends if f.user in counted]
        friends.sort(key=lambda f: (f.score, f.user), reverse=True)
        page, after = page_of(friends, lambda f: f.score, start, limit)
        events, excluded = explain_buyers(page, self.refs, counted=counted)
        return int(raw["value"]), events, excluded, after

    async def _via(self, layout, product_id, figure, at, start, limit, full, _viewer):
        product_ns = layout.product_prefix(product_id)
        ns = layout.referrals_prefix
        return await read_bought_via_shares(
            self._read, self.refs, ns, product_id, window_ms=figure.window_ms, at=at,
            start=start, limit=limit, full=full,
            buyers=None if product_ns == ns else self._buyers_page(product_ns, product_id),
        )

    async def _reviews(self, layout, product_id, figure, at, start, limit, full, _viewer):
        ns = layout.product_prefix(product_id)
        verified = figure.verified or self.reader.reviews_verified_only
        raw = await self._read("r", ns, product_id)
        reviews = [
            ReviewFacts(u, live == "1", int(rating or 0), as_ms(ts), as_str(eid), vf == "1")
            for u, live, rating, ts, eid, vf in as_list(raw.get("items"))
        ]
        value = int(raw["vcount"] if verified else raw["count"])
        if not full:
            reviews = [r for r in reviews if r.live and (r.verified or not verified)]
        reviews.sort(key=lambda r: (r.ms, r.user), reverse=True)
        page, after = page_of(reviews, lambda r: r.ms, start, limit)
        events, excluded = explain_reviews(page, self.refs, verified=verified)
        return value, events, excluded, after


def _position(raw: Any) -> tuple[str, int] | None:
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    return str(raw[0]), int(raw[1])
