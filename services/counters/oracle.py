"""A plain-Python reference model of every counter, computed from a list of events.

It restates the rules of the issue as directly as possible (no Redis, no incremental state), so
tests and ``make bench`` can check the stream processor's results against it: feed it the same
events (duplicates, any order) and compare with what :class:`services.notifier.proof.ProofReader`
reads. Rules:

- an erased user's events are ignored entirely (whenever the erasure arrives);
- an order line counts while ``quantity - refunds > 0`` and the order is not cancelled;
- bought windows count distinct users whose latest kept purchase is within the window;
- reviews, consent, first names and friendships: the newest ``(occurred_at, event_id)`` wins;
- shares count once per share id;
- friends_bought counts friends (never the viewer) with a kept purchase who share purchases;
- trending and the activity feed follow :mod:`contracts.views` (weights, 24 hourly buckets,
  consent and names at read time);
- a live review is *verified* while its author has a kept order line of the product (whatever
  came first: the review, the purchase, the refund);
- a question or an answer is recorded once per id (from its first event by
  ``(occurred_at, event_id)``); moderation of each, by target and id, is newest-wins; a question
  is *visible* while asked (asker not erased) and not hidden, an answer *shown* while posted
  (author not erased) and not hidden (a question's moderation does not touch its answers' own);
- per product (of the question): ``questions`` counts visible questions, ``answered`` those with
  a shown answer, ``answered_by_buyers`` those with a shown answer whose author has a kept
  order line of the answer's product;
- helpful votes: one per voter and answer, newest wins; an answer's ``helpful`` counts the
  helpful ones. Acceptance is a flag that, once set, stays (whoever accepted);
- question notes: user u is notified of question q (about p, asked at t by someone else) iff q
  is visible, u is not erased, u's newest privacy settings have ``notify_on_questions`` and u
  has a kept order line of p bought at or before t; of those, the first
  ``QUESTION_NOTES_PER_DAY`` of each UTC day of t (by t, then question id), and of those the
  newest ``NOTES_KEEP``;
- bought through friends' shares (``bought_via_shares``): distinct buyers credited to a sharer
  whose credited purchase is within the window (:mod:`services.counters.referral_oracle`, which
  has the rules of attribution and rewards).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from contracts import events as ev
from contracts.views import (
    BOUGHT_WINDOWS_MS,
    DAY_MS,
    HOUR_MS,
    NOTES_KEEP,
    QUESTION_NOTES_PER_DAY,
    SHARE_WINDOWS_MS,
    TRENDING_HOURS,
    TRENDING_WEIGHTS,
)


def _ms(event: ev.Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def _key(event: ev.Event) -> tuple[int, str]:
    return (_ms(event), str(event.event_id))


def _stars(ratings: list[int]) -> tuple[int, float | None, dict[str, int]]:
    """(count, average to two decimals or None, histogram) of a list of ratings."""
    histogram = {str(s): ratings.count(s) for s in range(1, 6)}
    if not ratings:
        return 0, None, histogram
    average = (Decimal(sum(ratings)) / len(ratings)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    return len(ratings), float(average), histogram


@dataclass
class Oracle:
    events: list[ev.Event]
    #: consent of users who never chose (the shop's defaults; privacy by default)
    default_share: bool = False
    default_feed: bool = False
    erased: set[str] = field(init=False)
    _referrals: object = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.erased = {e.payload.user_id for e in self.events if isinstance(e, ev.UserErased)}
        live = [e for e in self.events if not self._ignored(e)]
        self._orders(live)
        self._latest(live)
        self._shares = {e.payload.share_id: e for e in live if isinstance(e, ev.ProductShared)}
        self._questions_and_answers(live)

    def _ignored(self, e: ev.Event) -> bool:
        if isinstance(e, ev.AnswerAccepted):
            return False  # a fact about the answer: who accepted it is not recorded
        p = e.payload
        users = [getattr(p, "user_id", None), getattr(p, "friend_id", None)]
        return any(u in self.erased for u in users if u)

    def _orders(self, live: list[ev.Event]) -> None:
        purchases = {e.payload.order_id: e for e in live if isinstance(e, ev.PurchaseCompleted)}
        cancelled = {e.payload.order_id for e in live if isinstance(e, ev.OrderCancelled)}
        refunds: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for e in live:
            if isinstance(e, ev.OrderRefunded):
                per_product: dict[str, int] = defaultdict(int)
                for line in e.payload.lines:
                    per_product[line.product_id] += line.quantity
                for product, qty in per_product.items():
                    refunds[(e.payload.order_id, product)][e.payload.refund_id] = qty
        #: (order_id, product, user, ms) of every kept order line
        self.kept: list[tuple[str, str, str, int]] = []
        for order_id, e in purchases.items():
            if order_id in cancelled:
                continue
            bought: dict[str, int] = defaultdict(int)
            for line in e.payload.lines:
                bought[line.product_id] += line.quantity
            for product, qty in bought.items():
                if qty - sum(refunds[(order_id, product)].values()) > 0:
                    self.kept.append((order_id, product, e.payload.user_id, _ms(e)))
        self.latest_buy: dict[str, dict[str, int]] = defaultdict(dict)
        #: (product, user) -> their earliest kept purchase (ms)
        self.first_buy: dict[tuple[str, str], int] = {}
        for _, product, user, ms in self.kept:
            prev = self.latest_buy[product].get(user)
            self.latest_buy[product][user] = ms if prev is None else max(prev, ms)
            first = self.first_buy.get((product, user))
            self.first_buy[(product, user)] = ms if first is None else min(first, ms)

    def _latest(self, live: list[ev.Event]) -> None:
        def newest(events, key_of):
            out: dict = {}
            for e in events:
                k = key_of(e)
                if k not in out or _key(e) > _key(out[k]):
                    out[k] = e
            return out

        reviews = [
            e for e in live if isinstance(e, ev.ReviewPosted | ev.ReviewEdited | ev.ReviewDeleted)
        ]
        self._reviews = newest(reviews, lambda e: (e.payload.product_id, e.payload.user_id))
        privacy = [e for e in live if isinstance(e, ev.PrivacySettingsChanged)]
        self._consent = newest(privacy, lambda e: e.payload.user_id)
        profiles = [e for e in live if isinstance(e, ev.UserProfileUpdated)]
        self._names = newest(profiles, lambda e: e.payload.user_id)
        friendships = [
            e
            for e in live
            if isinstance(e, ev.FriendshipAdded | ev.FriendshipRemoved)
            and e.payload.user_id != e.payload.friend_id
        ]
        pairs = newest(friendships, lambda e: frozenset((e.payload.user_id, e.payload.friend_id)))
        self.friends: dict[str, set[str]] = defaultdict(set)
        for pair, e in pairs.items():
            if isinstance(e, ev.FriendshipAdded):
                a, b = tuple(pair)
                self.friends[a].add(b)
                self.friends[b].add(a)

    def _questions_and_answers(self, live: list[ev.Event]) -> None:
        def first(cls, id_of) -> dict:
            out: dict = {}
            for e in sorted((e for e in live if isinstance(e, cls)), key=_key):
                out.setdefault(id_of(e), e)
            return out

        self._asked = first(ev.QuestionAsked, lambda e: e.payload.question_id)
        self._posted = first(ev.AnswerPosted, lambda e: e.payload.answer_id)
        hidden: dict[tuple[str, str], ev.Event] = {}
        for e in live:
            if isinstance(e, ev.QaModerated):
                k = (e.payload.target, e.payload.target_id)
                if k not in hidden or _key(e) > _key(hidden[k]):
                    hidden[k] = e
        self._hidden = {k for k, e in hidden.items() if e.payload.hidden}
        votes: dict[tuple[str, str], ev.Event] = {}
        for e in live:
            if isinstance(e, ev.AnswerVoted):
                k = (e.payload.answer_id, e.payload.user_id)
                if k not in votes or _key(e) > _key(votes[k]):
                    votes[k] = e
        self._helpful: dict[str, int] = defaultdict(int)
        for (answer, _), e in votes.items():
            self._helpful[answer] += e.payload.helpful
        self._accepted = {e.payload.answer_id for e in live if isinstance(e, ev.AnswerAccepted)}

    # --- per-user facts ---------------------------------------------------------------------

    def shares_purchases(self, user: str) -> bool:
        e = self._consent.get(user)
        return e.payload.share_purchases_with_friends if e else self.default_share

    def in_feed(self, user: str) -> bool:
        e = self._consent.get(user)
        return e.payload.show_in_activity_feed if e else self.default_feed

    def first_name(self, user: str) -> str | None:
        e = self._names.get(user)
        return e.payload.first_name if e else None

    # --- the counters -------------------------------------------------------------------------

    def bought(self, product: str, now_ms: int) -> dict[str, int]:
        latest = self.latest_buy.get(product, {})
        return {
            label: sum(1 for ms in latest.values() if ms >= now_ms - window)
            for label, window in BOUGHT_WINDOWS_MS.items()
        }

    def live_reviews(self, product: str) -> dict[str, ev.Event]:
        return {
            user: e
            for (p, user), e in self._reviews.items()
            if p == product and not isinstance(e, ev.ReviewDeleted)
        }

    def bought_it(self, user: str, product: str) -> bool:
        """A verified buyer: the user has a kept order line of the product."""
        return (product, user) in self.first_buy

    def reviews(self, product: str) -> dict:
        live = self.live_reviews(product)
        ratings = [e.payload.rating for e in live.values()]
        verified = [e.payload.rating for u, e in live.items() if self.bought_it(u, product)]
        count, average, histogram = _stars(ratings)
        vcount, vaverage, vhistogram = _stars(verified)
        return {
            "count": count,
            "average": average,
            "histogram": histogram,
            "verified_count": vcount,
            "verified_average": vaverage,
            "verified_histogram": vhistogram,
        }

    # --- questions and answers ----------------------------------------------------------------

    def visible_questions(self, product: str | None = None) -> dict[str, ev.Event]:
        return {
            q: e
            for q, e in self._asked.items()
            if ("question", q) not in self._hidden
            and (product is None or e.payload.product_id == product)
        }

    def shown_answers(self, question: str) -> dict[str, ev.Event]:
        return {
            a: e
            for a, e in self._posted.items()
            if e.payload.question_id == question and ("answer", a) not in self._hidden
        }

    def by_buyer(self, answer: ev.Event) -> bool:
        return self.bought_it(answer.payload.user_id, answer.payload.product_id)

    def questions(self, product: str) -> dict:
        """The proof's ``questions``: visible questions, answered, answered by buyers."""
        visible = self.visible_questions(product)
        answers = {q: self.shown_answers(q) for q in visible}
        return {
            "count": len(visible),
            "answered": sum(1 for q in visible if answers[q]),
            "answered_by_buyers": sum(
                1 for q in visible if any(self.by_buyer(a) for a in answers[q].values())
            ),
        }

    def helpful(self, answer: str) -> int:
        return self._helpful.get(answer, 0)

    def accepted(self, answer: str) -> bool:
        return answer in self._accepted

    def wants_notes(self, user: str) -> bool:
        e = self._consent.get(user)
        return bool(e and e.payload.notify_on_questions)

    def notes(self, user: str) -> list[str]:
        """The question ids the user is notified of, newest first."""
        if user in self.erased or not self.wants_notes(user):
            return []
        per_day: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for q, e in self.visible_questions().items():
            first = self.first_buy.get((e.payload.product_id, user))
            if e.payload.user_id != user and first is not None and first <= _ms(e):
                per_day[_ms(e) // DAY_MS].append((_ms(e), q))
        notified = [c for day in per_day.values() for c in sorted(day)[:QUESTION_NOTES_PER_DAY]]
        return [q for _, q in sorted(notified, reverse=True)[:NOTES_KEEP]]

    def shares(self, product: str, now_ms: int) -> dict:
        mine = [e for e in self._shares.values() if e.payload.product_id == product]
        by_channel: dict[str, int] = defaultdict(int)
        for e in mine:
            by_channel[e.payload.channel] += 1
        out: dict = {
            label: sum(1 for e in mine if _ms(e) >= now_ms - window)
            for label, window in SHARE_WINDOWS_MS.items()
        }
        out["total"] = len(mine)
        out["by_channel"] = dict(sorted(by_channel.items()))
        return out

    def referrals(self):
        """Attribution and rewards from the same events (built on this oracle, once)."""
        from services.counters.referral_oracle import ReferralOracle  # it builds on this module

        if self._referrals is None:
            self._referrals = ReferralOracle(self.events, base=self)
        return self._referrals

    def proof(self, product: str, now_ms: int) -> dict:
        """The same shape as the notifier's product JSON, without ``as_of``."""
        return {
            "product_id": product,
            "bought": self.bought(product, now_ms),
            "bought_via_shares": self.referrals().bought_via_shares(product, now_ms),
            "reviews": self.reviews(product),
            "shares": self.shares(product, now_ms),
            "questions": self.questions(product),
        }

    def friends_who_bought(self, viewer: str, product: str) -> set[str]:
        buyers = self.latest_buy.get(product, {})
        return {
            f
            for f in self.friends.get(viewer, set())
            if f != viewer and f in buyers and self.shares_purchases(f)
        }

    def activities(self, product: str) -> list[tuple[int, str, str]]:
        """Every activity on a product as (ms, kind, user), before consent filtering."""
        out = [(ms, "bought", user) for _, p, user, ms in self.kept if p == product]
        out += [(_ms(e), "reviewed", user) for user, e in self.live_reviews(product).items()]
        out += [
            (_ms(e), "shared", e.payload.user_id)
            for e in self._shares.values()
            if e.payload.product_id == product
        ]
        return out

    def activity(self, product: str, limit: int = 20) -> list[tuple[str, str, int]]:
        """(kind, first name, ms), newest first, users who allow the feed and have a name."""
        shown = [
            (kind, self.first_name(user), ms)
            for ms, kind, user in self.activities(product)
            if self.in_feed(user) and self.first_name(user)
        ]
        shown.sort(key=lambda a: -a[2])
        return shown[:limit]

    def trending(self, now_ms: int, limit: int = 50) -> list[tuple[str, int]]:
        now_hour = now_ms // HOUR_MS
        scores: dict[str, int] = defaultdict(int)
        products = {p for _, p, _, _ in self.kept}
        products |= {p for p, _ in self._reviews}
        products |= {e.payload.product_id for e in self._shares.values()}
        for product in products:
            for ms, kind, _ in self.activities(product):
                age = now_hour - ms // HOUR_MS
                if 0 <= age < TRENDING_HOURS:
                    scores[product] += TRENDING_WEIGHTS[kind] * (TRENDING_HOURS - age)
        ranked = sorted(((p, s) for p, s in scores.items() if s > 0), key=lambda t: (-t[1], t[0]))
        return ranked[:limit]
