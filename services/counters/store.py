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

Referrals and share-to-unlock promotions (issue #17; ``referrals.lua`` and ``promotions.lua``,
one script with ``counters.lua``, so a purchase, refund, cancellation or erasure moves counters,
attribution and rewards in the same atomic call):

- *First touch.* The credit for buyer b's purchases of product p goes to the sharer of b's
  earliest kept referred purchase of p (by ``(event ms, order id)``), never to b's own link; a
  refund or cancellation of it moves the credit to the next one (maybe another sharer) or
  removes it. First rather than last touch because it is the only choice that is a function of
  the facts alone, whatever order they arrive in, and that cannot be taken over: a later link
  sent to a buyer who already bought through a friend moves nothing, so sharers cannot snipe
  each other's buyers, and a buyer counts once per sharer and product. Every line of a referred
  order is referred (the friend's link brought the buyer to the shop).
- *Facts.* ``ro:{o}`` (a referred purchase), ``link:{token}`` (a share's link); a purchase whose
  link is not known yet waits in ``linkwait:{token}`` until the share arrives (or for ever: an
  unknown token attributes nothing). The kept orders with a known link that is not the buyer's
  own form ``rb:{p}|{b}``; its first member is the credit, and each view (``via``, ``sharers``,
  ``credits``, a promotion's ``pc``/``pq``) is recomputed where that first member changes.
- *Promotions.* A sharer's progress in P is their distinct credited buyers of products in P's
  scope (one product, or a category: ``pcat:{p}`` from the newest ``ProductUpserted``) whose
  credited purchase is in ``[starts_at, min(ends_at, ended))``; at ``goal`` they qualify, ranked
  by when the goal-th buyer bought, then id. Earned sharer rewards = the redeemed ones and the
  first ``max_rewards - redeemed`` others qualifying (all without a cap); a credited buyer in
  scope and period earns the buyer reward. A newer definition (by ``(ts, event id)``) or an end
  recomputes the promotion from the sharers' credits.
- *Rewards* are deterministic (``reward_id`` from promotion, role and user; the coupon a keyed
  hash of it under ``SOCIALPROOF_COUPON_SECRET``), so whoever computes a reward computes the same
  one. A purchase carrying a coupon is a redemption fact (``redeemed:{code}``) that pins the
  reward: never withdrawn, and counted under the cap, whenever it arrives (before its
  promotion's definition it waits in ``redeemwait``). Every status change earned <-> withdrawn is
  appended, in the same script, to the outbox stream that the relay publishes
  (``services/counters/relay.py``), but only by a call writing the live namespace: a rebuild's
  replay or the shadow compute the same statuses silently. Which rewards exist *now* is order-
  independent; the history of transitions (a reward earned and withdrawn again, ``seq``) is not:
  a refund that arrives before its purchase never lets the reward be earned at all.
- *Erasure* of a buyer or sharer takes them out of every credit (their orders wait as if their
  link were unknown, like purchases arriving after the erasure), withdraws their earned rewards
  (reason ``erased``) and deletes their rewards and redemptions.
- *Cost.* A purchase without a referral or coupon and a share without a link call nothing more;
  a refund or cancellation looks up ``ro:{o}`` once. A referred purchase costs a few calls per
  line, plus, for each promotion of the product, a scan of the sharer's credits in its period.

Badge experiments (issue #18; ``experiments.lua``, in the same script, so a purchase, refund,
cancellation or erasure moves experiment figures in the same atomic call; the key layout is
``contracts/views.py``'s "Badge experiments", the rules restated in
:mod:`services.counters.experiment_oracle`):

- *Facts.* An impression is recorded under both its identities, ``xim:v:{visitor}|{p}`` and,
  with a viewer token, ``xim:u:{viewer}|{p}`` (scored by event ms, the member carrying
  experiment, variant, visitor, window and event id), and counted once: ``xvi:{E}|{visitor}``
  gets ``{V}|{event id}``, and only a new member moves ``xr`` (``imp``) and the first-seen time in
  ``xvf`` (``ZADD LT``). Clicks and dismissals are deduplicated the same way in ``xvc``. An
  interaction without an experiment (or variant) counts for the plain badge, ``_``/``badge``,
  with its window or 24 h. A purchase with a ``visitor_id`` keeps it on its order (``vis``) and
  in ``xvo:{visitor}|{p}``. A viewer's interactions are listed in ``xu:{user}`` for erasure.
- *Attribution* is a function of those facts, kept exact where they change: a kept line
  ``(o, p)`` is attributed in E to the latest, by ``(ms, member)``, impression of p in E by one of
  its identities (``u:{buyer}``, ``v:{visitor}``) with ``ms <= purchase <= ms + window``.
  ``xa:{o}|{p}`` says where, so taking it out subtracts what was added (``xr`` ``pur``,
  ``xvl``); a visitor's conversion time in ``xcv`` is ``ZADD LT`` on the way in and recomputed
  from ``xvl`` on the way out. The latest impression rather than the first, because a visitor's
  variant is fixed and the latest is the one nearest the decision; both are functions of the
  facts, so the choice does not cost order independence.
- *Where it is recomputed.* A line that becomes kept looks back ``MAX_ATTRIBUTION_WINDOW_H`` in
  the ``xim`` keys of its identities; a line no longer kept (refund to zero, cancellation; the
  counters' ``ub``) loses every ``xa``; an impression that arrives after purchases it could
  explain finds them in ``xvo:{visitor}|{p}`` and ``ub:{p}|{viewer}`` within its window and
  recomputes them in its experiment; an erasure of u takes u's lines out (and out of ``xvo``),
  each interaction of ``xu:{u}`` out of every count (``xvf`` recomputed from what remains in
  ``xvi``: a visitor whose only impressions those were stops counting), recomputes the lines
  credited to those visitors within those windows (``xvl``), and from then on every interaction
  naming u as viewer is dropped whole. Which experiments exist (``experiments``) names no one:
  every interaction adds its own, an erased viewer's too, so it is order-independent.
- *Cost*, measured with ``INFO commandstats`` on 4,000 one-line purchases against the script
  before #18 (~11.4 Redis calls per line): in a shop that never had an interaction, one
  ``EXISTS experiments`` per script call and nothing per line; once it has, one
  ``ZRANGEBYSCORE`` per kept line (``xim:u:{buyer}|{p}``, an empty key for most), about +1 us of
  Redis time on ~29 us; a purchase with a visitor id one more ``ZRANGEBYSCORE`` and one ``HSET``
  (``xvo``) per line, +3 calls, about +10 us (a new small hash per visitor and product). A
  refund or cancellation that ends a line's keeping adds one ``HGETALL`` of ``xa``. An impression
  costs ~4.9 calls anonymous, ~7.9 with a viewer (the ``xim:u``/``xu`` writes and the viewer's
  ``ub`` lookup), 20-33 us; counts are collected per call like the counters' (``hash_deltas``).
  Attribution itself (only where impressions match) costs a few calls per attributed
  experiment.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.exceptions import RedisError

from contracts import events as ev
from contracts import fastcodec, namespaces
from contracts.layout import (
    StoreLayout,
    default_shards,
    layout_field,
    outbox_prefix,
    parse_shards,
)
from contracts.views import (
    DAY_MS,
    DEFAULT_ATTRIBUTION_WINDOW_H,
    FEED_KEEP,
    FRIENDS_FANOUT_AT,
    HOUR_MS,
    NO_EXPERIMENT,
    NO_EXPERIMENT_VARIANT,
    NOTECAP_TTL_S,
    NOTES_KEEP,
    QUESTION_NOTES_PER_DAY,
    TRENDING_WEIGHTS,
    Keys,
)
from services.counters.settings import CountersSettings

log = logging.getLogger("socialproof.processor")

#: operations per script call: bounds how long one call holds Redis (a few ms)
CHUNK = 500
#: on a Redis Cluster, how long a batch waits for each master's replica to acknowledge its writes
#: (:meth:`CounterStore.confirm_replicated`) before it fails and is retried whole
REPLICATION_TIMEOUT_MS = 2000


class NotReplicated(RedisError):
    """A master's replica did not acknowledge a batch's writes in time: the batch is not done."""

# The script (services/counters/counters.lua) after its constants; ARGV and the reply are described
# at the top of the file. Read once at import: a wheel carries the .lua file beside this module.
_CONSTANTS = (
    f"local HOUR = {HOUR_MS}\n"
    f"local W_BUY, W_REVIEW, W_SHARE = {TRENDING_WEIGHTS['bought']}, "
    f"{TRENDING_WEIGHTS['reviewed']}, {TRENDING_WEIGHTS['shared']}\n"
    f"local FEED_KEEP = {FEED_KEEP}\n"
    # notes a shard keeps: ARGV[8] (see CounterStore.apply_operations)
    f"local NOTES_PER_DAY, NOTES_KEEP = {QUESTION_NOTES_PER_DAY}, tonumber(ARGV[8]) or {NOTES_KEEP}\n"
    f"local DAY, NOTECAP_TTL = {DAY_MS}, {NOTECAP_TTL_S}\n"
    f"local XMAXW = {ev.MAX_ATTRIBUTION_WINDOW_H * HOUR_MS}\n"
)
#: the .lua files of the one script, in order: counters.lua calls the hooks the others define
SCRIPT_FILES = ("promotions.lua", "referrals.lua", "experiments.lua", "counters.lua")


def script_source(directory: Path | None = None) -> str:
    """The store's one script: its constants, then :data:`SCRIPT_FILES` read from ``directory``
    (default: beside this module; ``bench.profile_redis`` compares another copy with it)."""
    where = directory or Path(__file__).parent
    return _CONSTANTS + "".join((where / name).read_text(encoding="utf-8") for name in SCRIPT_FILES)


APPLY_LUA = script_source()


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


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _purchase(e: ev.PurchaseCompleted) -> list:
    p = e.payload
    op = ["P", p.order_id, p.user_id, event_ms(e), _merge_lines(p.lines), str(e.event_id)]
    if p.referral or p.coupon or p.visitor_id:  # most: nothing for referrals.lua to look at
        op += [p.referral or "", p.coupon or ""]
        if p.visitor_id:
            op.append(p.visitor_id)
    return op


#: the attribution window of interactions that carry none (a plain badge's), seconds
DEFAULT_WINDOW_S = DEFAULT_ATTRIBUTION_WINDOW_H * 3600


def _interaction(kind: str) -> Callable[[Any], list]:
    """Badge interactions: one builder per kind (``v`` viewed, ``c`` clicked, ``d`` dismissed).
    Without an experiment (or a variant) they count for the plain badge."""

    def build(e: ev.Event) -> list:
        p = e.payload
        plain = p.experiment_id is None or p.variant is None
        return [
            "I", kind, NO_EXPERIMENT if plain else p.experiment_id,
            NO_EXPERIMENT_VARIANT if plain else p.variant, p.visitor_id, p.viewer_id or "",
            p.product_id, p.attribution_window_s or DEFAULT_WINDOW_S, event_ms(e),
            str(e.event_id),
        ]

    return build


def _share(e: ev.ProductShared) -> list:
    p = e.payload
    op = ["S", p.share_id, p.user_id, p.product_id, p.channel, event_ms(e), str(e.event_id)]
    if p.link_token:
        op.append(p.link_token)
    return op


def _spec(spec: ev.RewardSpec | None) -> list[str]:
    if spec is None:
        return ["", "", ""]
    return [spec.kind, format(spec.value, "f"), spec.currency or ""]


def _promotion(e: ev.PromotionDefined) -> list:
    p = e.payload
    return [
        "D", p.promotion_id, event_ms(e), str(e.event_id), p.product_id or "",
        p.category or "", p.title, p.goal.buyers, _ms(p.starts_at), _ms(p.ends_at),
        p.max_rewards or 0, *_spec(p.sharer_reward), *_spec(p.buyer_reward),
    ]


# One builder per event class (a dict lookup, not a chain of isinstance checks: this runs for
# every event the worker applies). Each returns the script operation for the event.
_OPERATIONS: dict[type, Callable[[Any], list]] = {
    ev.PurchaseCompleted: _purchase,
    ev.OrderRefunded: lambda e: [
        "R", e.payload.order_id, e.payload.refund_id, e.payload.user_id,
        _merge_lines(e.payload.lines), event_ms(e),
    ],
    ev.OrderCancelled: lambda e: ["C", e.payload.order_id, e.payload.user_id, event_ms(e)],
    ev.ReviewPosted: lambda e: [
        "V", 1, e.payload.product_id, e.payload.user_id, e.payload.rating, event_ms(e),
        str(e.event_id),
    ],
    ev.ReviewDeleted: lambda e: [
        "V", 0, e.payload.product_id, e.payload.user_id, 0, event_ms(e), str(e.event_id)
    ],
    ev.ProductShared: _share,
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
    ev.UserErased: lambda e: ["E", e.payload.user_id, event_ms(e)],
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
    ev.PromotionDefined: _promotion,
    ev.PromotionEnded: lambda e: ["T", e.payload.promotion_id, event_ms(e), str(e.event_id)],
    # a product's category scopes category promotions; a deletion leaves it (past purchases
    # keep counting where they counted)
    ev.ProductUpserted: lambda e: [
        "U", e.payload.product_id, e.payload.category or "", event_ms(e), str(e.event_id)
    ],
    ev.BadgeViewed: _interaction("v"),
    ev.BadgeClicked: _interaction("c"),
    ev.BadgeDismissed: _interaction("d"),
}
_OPERATIONS[ev.ReviewEdited] = _OPERATIONS[ev.ReviewPosted]
# The worker decodes into contracts.fastcodec's Structs, which have the models' attribute names
# (a UUID as its canonical text, which str() leaves as it is): the same builders read them, and
# tests/unit/test_fastcodec.py checks both give the same operation.
_OPERATIONS.update(
    {struct: _OPERATIONS[cls] for cls, struct in fastcodec.STRUCTS.items() if cls in _OPERATIONS}
)


def operation(event: ev.Event | Any) -> list | None:
    """The script operation for one event (a model or its fast Struct), or None for events that
    feed no counter (product deletions)."""
    build = _OPERATIONS.get(type(event))
    return build(event) if build is not None else None


# Where each operation goes in a sharded layout (contracts/layout.py): the index of its product
# in the operation, for operations about one product.
_PRODUCT_AT = {"V": 2, "S": 3, "Q": 2, "A": 3, "H": 3, "K": 3, "M": 4, "I": 6}
#: user facts and cancellations: every shard (a cancellation names an order, not its products)
_EVERY_SHARD = frozenset("FXNEC")
#: promotion definitions and ends, product categories: the referrals shard only
_REFERRALS_ONLY = frozenset("DTU")


def fan_out(op: list, layout: StoreLayout) -> int:
    """How many shard operations :func:`route` makes of ``op`` (one for most; a user fact or a
    cancellation one per shard), for callers that size their calls by the work routed."""
    return len(layout.prefixes) if op[0] in _EVERY_SHARD else 1


def route(ops: list[list], layout: StoreLayout) -> dict[str, list[list]]:
    """The operations of a batch by the prefix of the shard that applies them
    (contracts/layout.py says why each goes where). One shard: all of them, unchanged."""
    if not layout.sharded:
        return {layout.namespace: ops}
    by_shard: dict[str, list[list]] = defaultdict(list)
    referrals = layout.referrals_prefix
    every = layout.prefixes
    for op in ops:
        kind = op[0]
        if kind == "P" or kind == "R":
            lines = op[4]
            split: dict[str, list] = defaultdict(list)
            for i in range(0, len(lines), 2):
                split[layout.product_prefix(lines[i])] += lines[i : i + 2]
            if kind == "P":
                # product shards: the lines of theirs, without link and coupon (and so without
                # referral work); the visitor id stays (badge experiments are per product)
                visitor = op[8] if len(op) > 8 else None
                head = op[:4]
                for prefix, own in split.items():
                    by_shard[prefix].append(
                        [*head, own, op[5], "", "", visitor] if visitor else [*head, own, op[5]]
                    )
                if len(op) > 6 and (op[6] or op[7]):  # a referral or coupon: the whole order
                    by_shard[referrals].append(op[:8])
            else:
                for prefix, own in split.items():
                    by_shard[prefix].append([*op[:4], own, *op[5:]])
                by_shard[referrals].append(op)  # whether the order was referred is known there
        elif kind in _EVERY_SHARD:
            for prefix in every:
                by_shard[prefix].append(op)
        elif kind in _REFERRALS_ONLY:
            by_shard[referrals].append(op)
        elif kind == "S":
            by_shard[layout.product_prefix(op[3])].append(op[:7])
            if len(op) > 7:  # a share with a link: attribution happens in the referrals shard
                by_shard[referrals].append(op)
        else:
            by_shard[layout.product_prefix(op[_PRODUCT_AT[kind]])].append(op)
    return by_shard


@dataclass
class Changes:
    """What applying events changed: the products whose public views changed (announced on
    ``{ns}:changes``) and the users whose question notes changed (``{ns}:user-changes``)."""

    products: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    #: on a cluster: the masters these writes were applied on (node name -> (node, a shard
    #: prefix it serves)), for :meth:`CounterStore.confirm_replicated`
    landed: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def __ior__(self, other: Changes) -> Changes:
        self.products |= other.products
        self.users |= other.users
        self.landed.update(other.landed)
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
        coupon_secret: str | None = None,
        script: str = APPLY_LUA,
    ) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        #: live workers write the namespace `replay rebuild --switch` made active, and its shadow
        #: during a hand-over (contracts.namespaces); a rebuild's replay worker writes its own only
        self.follow_active = follow_active
        self._pointer = namespaces.pointer_key(namespace)
        self._apply = redis.register_script(script)
        #: a Redis Cluster: every namespace is sharded (contracts/layout.py)
        self._cluster = isinstance(redis, AsyncRedisCluster)
        self._shards: dict[str, int] = {}
        #: one connection of our own to each master confirm_replicated() asked (WAIT counts the
        #: writes of the connection it runs on)
        self._confirmers: dict[str, aioredis.Redis] = {}
        #: consent of users who never chose (SOCIALPROOF_DEFAULT_SHARE_PURCHASES); privacy by
        #: default. Changing it later applies to purchases recorded from then on.
        self._default_share = "1" if default_share_purchases else "0"
        #: friendships on record from which a viewer's friends_bought is fanned out on write
        #: (SOCIALPROOF_WORKER_FRIENDS_FANOUT_AT; 0: never)
        self._fanout_at = str(fanout_at)
        #: the key of reward coupons (SOCIALPROOF_COUPON_SECRET, else the service token; None:
        #: read from the environment as the worker's settings do)
        if coupon_secret is None:
            coupon_secret = CountersSettings().coupon_key()
        if not coupon_secret and follow_active:
            log.warning("no SOCIALPROOF_COUPON_SECRET nor service token: coupons are guessable")
        self._coupon_secret = coupon_secret
        #: reward transitions go to the base namespace's outbox (the same across rebuilds), and
        #: only from calls that write the live namespace: targets()[0] of a live worker
        outbox = Keys(outbox_prefix(namespace, self._cluster))
        self._outbox = outbox.rewards_outbox
        self._emissions = f"{outbox.ns}:rewards:seq"
        self._live = self.keys.ns

    async def targets(self) -> tuple[str, ...]:
        """The namespaces this batch must be written to (first: the one readers serve)."""
        if not self.follow_active:
            return (self.keys.ns,)
        pointer = await self.redis.hgetall(self._pointer)
        written = namespaces.parse(pointer, self.keys.ns).written
        for ns in written:
            if (shards := parse_shards(pointer, ns)) is not None:
                self._shards[ns] = shards
        self._live = written[0]
        return written

    async def layout(self, namespace: str | None = None) -> StoreLayout:
        """The shards of ``namespace`` (default: this store's): as recorded beside the pointer,
        else recorded now as the default for this store (1 on one Redis, several on a
        cluster; contracts/layout.py). Every writer and reader reads the same record."""
        ns = namespace or self.keys.ns
        shards = self._shards.get(ns)
        if shards is None:
            field_ = layout_field(ns)
            await self.redis.hsetnx(self._pointer, field_, default_shards(self._cluster))
            shards = int(await self.redis.hget(self._pointer, field_))
            self._shards[ns] = shards
        return StoreLayout(ns, shards)

    def emits(self, namespace: str) -> bool:
        """Whether applying to ``namespace`` appends reward transitions to the outbox: only a live
        worker's writes to the namespace readers serve (as of its last :meth:`targets`), never a
        rebuild's replay worker nor the shadow during a hand-over."""
        return self.follow_active and namespace == self._live

    async def apply(
        self, events: list[ev.Event | Any], namespace: str | None = None, emit: bool | None = None
    ) -> Changes:
        """Apply a batch in one pipelined round trip; returns what changed (to announce).
        ``emit``: append reward transitions to the outbox (None: :meth:`emits`)."""
        ops = [op for op in map(operation, events) if op is not None]
        return await self.apply_operations(ops, namespace, emit)

    async def apply_operations(
        self, ops: list[list], namespace: str | None = None, emit: bool | None = None
    ) -> Changes:
        if not ops:
            return Changes()
        ns = namespace or self.keys.ns
        if emit is None:
            emit = self.emits(ns)
        layout = await self.layout(ns)
        referrals = layout.referrals_prefix
        routed = route(ops, layout)
        # The notifier merges the shards' notes (per UTC day the first QUESTION_NOTES_PER_DAY, then
        # the newest NOTES_KEEP): a note among the newest NOTES_KEEP overall has at most
        # QUESTION_NOTES_PER_DAY - 1 newer ones in its shard that lost the day's cap to other
        # shards' candidates, so each shard keeps that many more and the merge misses none.
        notes_keep = NOTES_KEEP + (QUESTION_NOTES_PER_DAY - 1 if layout.sharded else 0)
        # EVALSHA straight away (the script is loaded on first NOSCRIPT): a redis-py pipeline would
        # add a SCRIPT EXISTS round trip to every call. Chunks run concurrently; facts commute.
        # Each call names one key of its shard (KEYS[1], unused by the script), which is how a
        # cluster client routes it to the master of that shard's slot. Only the referrals shard
        # decides rewards, so only its calls get the outbox (in its slot on a cluster).
        changed = Changes()

        async def call(prefix: str, **kwargs: Any) -> str:
            result = await self._apply(**kwargs)
            if self._cluster:  # where it ran: the client's slot map right after the answer
                node = self.redis.get_node_from_key(f"{prefix}:erased")  # type: ignore[attr-defined]
                changed.landed.setdefault(node.name, (node, prefix))
            return result

        results = await asyncio.gather(
            *(
                call(
                    prefix,
                    keys=[f"{prefix}:erased"],
                    args=[
                        prefix,
                        orjson.dumps(shard_ops[start : start + CHUNK]),
                        self._default_share,
                        self._fanout_at,
                        self._coupon_secret,
                        self._outbox if emit and prefix == referrals else "",
                        self._emissions,
                        notes_keep,
                    ],
                )
                for prefix, shard_ops in routed.items()
                for start in range(0, len(shard_ops), CHUNK)
            )
        )
        for result in results:
            products, users = orjson.loads(result)
            changed.products.update(products)
            changed.users.update(users)
        return changed

    async def confirm_replicated(self, changed: Changes) -> None:
        """On a Redis Cluster, return only once every master these writes were applied on
        (``changed.landed``) has them acknowledged by a replica; on one Redis, at once.

        Redis replicates asynchronously: a master answers a script before its replica has the
        writes, and a master SIGKILLed in between takes them along when its replica is promoted.
        The worker commits its Kafka offsets after a batch, so without this wait such a batch
        would be lost for good (tests/reliability/test_cluster_failover.py lost the batch in
        flight at the kill in 2 of ~55 runs). ``WAIT`` counts the writes of the connection it
        runs on, so each master gets a marker written on a connection of our own, then
        ``WAIT 1``: the marker's replication offset is past every script the master answered
        before it. The masters are the batch's own (recorded as each call returned), not
        whoever serves the slots now: a master that died or was demoted since fails the
        confirmation, and the batch is applied again where its slots are now. A master without
        any replica configured (``CLUSTER REPLICAS``) is not waited for. A replica that does not
        answer within :data:`REPLICATION_TIMEOUT_MS` fails the batch (:class:`NotReplicated`),
        which the worker retries whole: while a master has lost its replica, lag grows rather
        than acknowledging writes one more failure would lose.

        Not closed: a master that dies while its answer is in flight, after another call moved
        the client's slot map to its successor, is recorded as the successor.
        """
        if changed.landed:
            await asyncio.gather(
                *(self._replicated(node, prefix) for node, prefix in changed.landed.values())
            )

    async def _replicated(self, node: Any, prefix: str) -> None:
        conn = self._confirmers.get(node.name)
        if conn is None:
            conn = self._confirmers[node.name] = aioredis.Redis(
                host=node.host,
                port=node.port,
                single_connection_client=True,
                socket_timeout=REPLICATION_TIMEOUT_MS / 1000 + 2,
                socket_connect_timeout=2.0,
                decode_responses=True,
            )
        try:
            replicas = await conn.execute_command(
                "CLUSTER", "REPLICAS", await conn.execute_command("CLUSTER", "MYID")
            )
            if not replicas:
                return  # nothing to wait for: a master without replicas
            # outside every namespace (state comparisons and drops never see it), in the shard's
            # slot (its hash tag)
            await conn.set(f"socialproof:replicated:{prefix[prefix.index('{') :]}", 1)
            acked = await conn.wait(1, REPLICATION_TIMEOUT_MS)
        except RedisError:
            del self._confirmers[node.name]
            await conn.aclose()
            raise
        if acked < 1:
            raise NotReplicated(
                f"no replica of {node.name} acknowledged the batch within {REPLICATION_TIMEOUT_MS} ms"
            )

    async def close(self) -> None:
        """Close the connections :meth:`confirm_replicated` opened (the client is the caller's)."""
        confirmers, self._confirmers = self._confirmers, {}
        for conn in confirmers.values():
            await conn.aclose()

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
