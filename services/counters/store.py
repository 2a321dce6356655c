"""Applies decoded events to the Redis serving store, idempotently and order-independently.

Why this is effectively-once without Kafka transactions: every event is recorded as a *fact*
(an order's lines, a refund's quantity keyed by its refund id, a share keyed by its share id, a
review/consent/profile/friendship state that only a newer ``(occurred_at, event_id)`` replaces)
and every view changes only when a fact's *state* changes, inside one atomic Lua script.
Recording a fact twice is a no-op, so duplicates, redeliveries after a crash and full replays
never change a counter. Facts commute, so events arriving in another order across topics converge
to the same state: a refund or cancellation that arrives before its purchase waits as a fact and
the purchase's recompute applies it; friendships and consent are read when needed. Erasure adds
the user to ``erased`` (checked by every later event of theirs, replays included) and removes them
from every view. Two workers may run scripts on the same keys concurrently: each script is atomic
and its result depends only on the facts, so any interleaving converges.

A batch of events becomes a few concurrent script calls (one ``EVALSHA`` per chunk of
operations, JSON-encoded: one round trip each, no per-event calls), then one coalesced
announcement of the products whose views changed and one of the users whose question notes
changed (:meth:`CounterStore.announce`). The script is ``counters.lua`` beside this module; the
key layout is :mod:`contracts.views`.

Derived facts that depend on other facts (a review is *verified* while its author has a kept
purchase; an answer is *by a buyer* likewise; a question counts as *answered*) are kept exact in
any order the same way: each says on its own fact how it is counted now (``vf`` on a review,
``c`` on a question, membership of ``qans``/``qbuyans`` for an answer), and every event that can
change the inputs recomputes the derived state from the facts and moves the counts by the
difference. So taking a contribution out always subtracts what was added, whatever changed in
between. A user's standing as a buyer of a product changes exactly where ``ub:{p}|{u}`` appears
(``add_buyer``) or empties (``recompute``); both call ``standing()``, which moves their live
review between the verified and unverified figures and re-files their answers about the product;
an erasure takes everything of the user out using the recorded ``vf``/membership.

Question notes follow the same idea. Who is notified of a question is a function of the facts:
buyers with a kept purchase made at or before the question (``qnotify:{p}``, scored by their
earliest kept purchase) who allow the notes, not the asker; per user and UTC day the first
``QUESTION_NOTES_PER_DAY`` of those *candidates* by ask time, of all of them the newest
``NOTES_KEEP``. A candidate appears or goes when a question is shown or hidden, a buyer's earliest
kept purchase moves (purchase, refund, cancellation), their consent changes or someone is erased,
and each time the day's ordered candidate set (``notecap``) says which notes change: the next
candidate moves up when one goes, and a note that leaves a full ``notes`` brings back the newest
older one. So the notes do not depend on the order events arrive in, and a redelivered question
(already a candidate) counts once. The cost: a question is fanned out to the product's
opted-in buyers, and a buyer who opts in, or buys earlier than before, is matched against the
product's questions since their purchase (cheap when events arrive in time; a rebuild pays it
once). A day's candidate set expires ``NOTECAP_TTL_S`` after its last change (memory): a change
arriving later than that for that day moves only its own note, judged without the day's earlier
candidates (a late question can then pass the cap).

friends_bought — a hybrid: intersection on read, fan-out on write for viewers with many friends
(see also ``services/notifier/proof.py``):

- *Fan-out on write for everyone* (per viewer, the set of their friends who bought each product)
  costs O(friends) writes per purchase: a buyer with 5,000 friends turns one purchase into 5,000
  writes, and stores viewers x products sets, most never read.
- *Intersection on read* keeps two plain sets: ``friends:{viewer}`` and ``cbuyers:{product}``
  (buyers with a kept purchase who share purchases with friends). ``SINTER`` iterates the
  smaller set and probes the other, so a purchase costs O(1) writes whatever the buyer's friend
  count. But a read costs one hash probe per friend on a big product, and on a 1,000,000-member
  set each probe is a cache miss: ~0.1 us, so ~0.5 ms for a 5,000-friend viewer with a p99 of
  2-4 ms on this shared machine (``make bench``, scenarios ``friends_bought`` and ``scaling``).
- So, the *hybrid*: a viewer with ``FRIENDS_FANOUT_AT`` (2,000) friendships or more on record
  is in ``fanout``, and for them the processor keeps ``fb:{viewer}|{product}`` = their friends
  ∩ ``cbuyers:{product}``; the read is a ``ZCARD`` (plus names from the first few members)
  whatever the sizes. Everyone else is read by intersection: at most ~2,000 probes, ~0.25 ms
  inside Redis (p99 0.6-0.9 ms at the client in `make bench`).
  A purchase costs one more ``SMEMBERS`` (``user:{buyer}:fo``, the buyer's fanned-out friends)
  and a member added per fanned-out friend (collected per key within a script call, like the
  other ZADDs); memory is one member per (fanned-out viewer, friend, product bought).
- The threshold trades read time for write time. In the bench's graph (10,000 users, 150
  friends on average, a heavy tail up to ~3,000), 1,000 fans out 30 viewers and every purchase
  goes to 4.4 of them on average; 2,000 fans out 3 viewers, 0.84 per purchase.
- It stays exact, order-independent and idempotent because it is set membership, not a counter:
  every change to a ``cbuyers`` set goes through ``cbuyer()`` and every friendship change of a
  fanned-out viewer through ``link()``, and both add or remove the same member, so a duplicate
  is a no-op. Who is fanned out depends only on the friendship facts (which arrive in
  any order and never go away but for an erasure), not on their order; entering builds the
  viewer's sets from the facts, leaving (an erasure of friends) deletes them. Changing the
  threshold applies to a viewer at their next new friendship; reads are exact either way.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from contracts import events as ev
from contracts import namespaces
from contracts.views import (
    DAY_MS,
    FEED_KEEP,
    FRIENDS_FANOUT_AT,
    HOUR_MS,
    NOTECAP_TTL_S,
    NOTES_KEEP,
    QUESTION_NOTES_PER_DAY,
    TRENDING_WEIGHTS,
    Keys,
)

#: operations per script call: bounds how long one call holds Redis (a few ms)
CHUNK = 500

# The script (services/counters/counters.lua) after its constants; ARGV and the reply are described
# at the top of the file. Read once at import: a wheel carries the .lua file beside this module.
_CONSTANTS = (
    f"local HOUR = {HOUR_MS}\n"
    f"local W_BUY, W_REVIEW, W_SHARE = {TRENDING_WEIGHTS['bought']}, "
    f"{TRENDING_WEIGHTS['reviewed']}, {TRENDING_WEIGHTS['shared']}\n"
    f"local FEED_KEEP = {FEED_KEEP}\n"
    f"local NOTES_PER_DAY, NOTES_KEEP = {QUESTION_NOTES_PER_DAY}, {NOTES_KEEP}\n"
    f"local DAY, NOTECAP_TTL = {DAY_MS}, {NOTECAP_TTL_S}\n"
)
APPLY_LUA = _CONSTANTS + Path(__file__).with_name("counters.lua").read_text(encoding="utf-8")


def _merge_lines(lines: Iterable[ev.OrderLine | ev.RefundLine]) -> list[str | int]:
    """Flatten lines into product, quantity pairs, summing a product listed twice."""
    if len(lines) == 1:  # most orders: nothing to merge
        (line,) = lines
        return [line.product_id, line.quantity]
    quantities: dict[str, int] = defaultdict(int)
    for line in lines:
        quantities[line.product_id] += line.quantity
    flat: list[str | int] = []
    for product, qty in quantities.items():
        flat += [product, qty]
    return flat


def event_ms(event: ev.Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


# One builder per event class (a dict lookup, not a chain of isinstance checks: this runs for
# every event the worker applies). Each returns the script operation for the event.
_OPERATIONS: dict[type, Callable[[Any], list]] = {
    ev.PurchaseCompleted: lambda e: [
        "P", e.payload.order_id, e.payload.user_id, event_ms(e), _merge_lines(e.payload.lines),
        str(e.event_id),
    ],
    ev.OrderRefunded: lambda e: [
        "R", e.payload.order_id, e.payload.refund_id, e.payload.user_id,
        _merge_lines(e.payload.lines),
    ],
    ev.OrderCancelled: lambda e: ["C", e.payload.order_id, e.payload.user_id],
    ev.ReviewPosted: lambda e: [
        "V", 1, e.payload.product_id, e.payload.user_id, e.payload.rating, event_ms(e),
        str(e.event_id),
    ],
    ev.ReviewDeleted: lambda e: [
        "V", 0, e.payload.product_id, e.payload.user_id, 0, event_ms(e), str(e.event_id)
    ],
    ev.ProductShared: lambda e: [
        "S", e.payload.share_id, e.payload.user_id, e.payload.product_id, e.payload.channel,
        event_ms(e), str(e.event_id),
    ],
    ev.FriendshipAdded: lambda e: [
        "F", 1, e.payload.user_id, e.payload.friend_id, event_ms(e), str(e.event_id)
    ],
    ev.FriendshipRemoved: lambda e: [
        "F", 0, e.payload.user_id, e.payload.friend_id, event_ms(e), str(e.event_id)
    ],
    ev.PrivacySettingsChanged: lambda e: [
        "X", e.payload.user_id, int(e.payload.share_purchases_with_friends),
        int(e.payload.show_in_activity_feed), event_ms(e), str(e.event_id),
        int(bool(e.payload.notify_on_questions)),  # absent (an older producer): no
    ],
    ev.UserProfileUpdated: lambda e: [
        "N", e.payload.user_id, e.payload.first_name, event_ms(e), str(e.event_id)
    ],
    ev.UserErased: lambda e: ["E", e.payload.user_id],
    ev.QuestionAsked: lambda e: [
        "Q", e.payload.question_id, e.payload.product_id, e.payload.user_id, event_ms(e),
        str(e.event_id),
    ],
    ev.AnswerPosted: lambda e: [
        "A", e.payload.answer_id, e.payload.question_id, e.payload.product_id, e.payload.user_id,
        event_ms(e), str(e.event_id),
    ],
    ev.AnswerVoted: lambda e: [
        "H", e.payload.answer_id, e.payload.question_id, e.payload.product_id, e.payload.user_id,
        int(e.payload.helpful), event_ms(e), str(e.event_id),
    ],
    ev.AnswerAccepted: lambda e: [
        "K", e.payload.answer_id, e.payload.question_id, e.payload.product_id
    ],
    ev.QaModerated: lambda e: [
        "M", "q" if e.payload.target == "question" else "a", e.payload.target_id,
        e.payload.question_id, e.payload.product_id, int(e.payload.hidden), event_ms(e),
        str(e.event_id),
    ],
}
_OPERATIONS[ev.ReviewEdited] = _OPERATIONS[ev.ReviewPosted]


def operation(event: ev.Event) -> list | None:
    """The script operation for one event, or None for events that feed no counter (catalogue
    events)."""
    build = _OPERATIONS.get(type(event))
    return build(event) if build is not None else None


@dataclass
class Changes:
    """What applying events changed: the products whose public views changed (announced on
    ``{ns}:changes``) and the users whose question notes changed (``{ns}:user-changes``)."""

    products: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def __ior__(self, other: Changes) -> Changes:
        self.products |= other.products
        self.users |= other.users
        return self


class CounterStore:
    """Writes events into the serving store; one instance per worker process."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        default_share_purchases: bool = False,
        follow_active: bool = False,
        fanout_at: int = FRIENDS_FANOUT_AT,
    ) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        #: live workers write the namespace `replay rebuild --switch` made active, and its shadow
        #: during a hand-over (contracts.namespaces); a rebuild's replay worker writes its own only
        self.follow_active = follow_active
        self._pointer = namespaces.pointer_key(namespace)
        self._apply = redis.register_script(APPLY_LUA)
        #: consent of users who never chose (SOCIALPROOF_DEFAULT_SHARE_PURCHASES); privacy by
        #: default. Changing it later applies to purchases recorded from then on.
        self._default_share = "1" if default_share_purchases else "0"
        #: friendships on record from which a viewer's friends_bought is fanned out on write
        #: (SOCIALPROOF_WORKER_FRIENDS_FANOUT_AT; 0: never)
        self._fanout_at = str(fanout_at)

    async def targets(self) -> tuple[str, ...]:
        """The namespaces this batch must be written to (first: the one readers serve)."""
        if not self.follow_active:
            return (self.keys.ns,)
        return namespaces.parse(await self.redis.hgetall(self._pointer), self.keys.ns).written

    async def apply(self, events: list[ev.Event], namespace: str | None = None) -> Changes:
        """Apply a batch in one pipelined round trip; returns what changed (to announce)."""
        ops = [op for op in map(operation, events) if op is not None]
        return await self.apply_operations(ops, namespace)

    async def apply_operations(self, ops: list[list], namespace: str | None = None) -> Changes:
        if not ops:
            return Changes()
        ns = namespace or self.keys.ns
        # EVALSHA straight away (the script is loaded on first NOSCRIPT): a redis-py pipeline would
        # add a SCRIPT EXISTS round trip to every call. Chunks run concurrently; facts commute.
        results = await asyncio.gather(
            *(
                self._apply(
                    args=[
                        ns,
                        orjson.dumps(ops[start : start + CHUNK]),
                        self._default_share,
                        self._fanout_at,
                    ]
                )
                for start in range(0, len(ops), CHUNK)
            )
        )
        changed = Changes()
        for result in results:
            products, users = orjson.loads(result)
            changed.products.update(products)
            changed.users.update(users)
        return changed

    async def announce(self, changed: Changes) -> None:
        """One coalesced message per batch and channel: the notifier re-reads and pushes these
        products (``{ns}:changes``) and these users' notes (``{ns}:user-changes``)."""
        if changed.products:
            await self.redis.publish(
                self.keys.changes_channel, orjson.dumps(sorted(changed.products))
            )
        if changed.users:
            await self.redis.publish(
                self.keys.user_changes_channel, orjson.dumps(sorted(changed.users))
            )
