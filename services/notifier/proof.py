"""Reads social proof from the serving store (the layout in :mod:`contracts.views`).

The read side of the stream processor's counters, used by the notifier's endpoints (and by
tests and ``make bench`` directly). Stable methods of :class:`ProofReader`:

- ``read_many(ids)`` / ``read(id)``: public counters per product (bought windows, bought through
  friends' shares (24 h / 7 d, from ``{ns}:via:{p}``), reviews with their verified-purchase
  subset, shares, questions), one pipelined round trip for any number of products. Counters an
  older processor never wrote (``vcount``, ``{ns}:qa:{p}``, ``{ns}:via:{p}``) read as zeros.
- ``read_personal(id, viewer_id)``: ``read(id)`` and ``friends_bought(viewer_id, id)`` in one
  round trip.
- ``friends_bought(viewer_id, product_id)``: ``(count, up to 3 first names)`` of the viewer's
  friends with a kept purchase who share purchases with friends; the viewer is never counted.
  It is an intersection on read (one ``SINTER`` walking the smaller of the viewer's friend set and
  the product's consenting-buyer set), or, for a viewer with ``FRIENDS_FANOUT_AT`` friendships or
  more, the set the processor keeps for them (fan-out on write); reasoning in
  ``services/counters/store.py``. Both are written in the same atomic script as the facts,
  so friendship, consent, refund and erasure changes show on the very next read. The caller (the
  notifier's viewer-token endpoint) must make sure ``viewer_id`` is the authenticated viewer.
- ``trending(limit=50)``: products ranked by weighted activity of the last 24 event-time hours.
- ``activity(product_id, limit=20)``: the newest activities of users who allow the feed, first
  name only; consent, names and erasure are applied at read time.
- ``notes(viewer_id)``: the viewer's question notifications (``{ns}:notes:{viewer}``, newest
  first), only while the viewer allows them (consent ``q``) and is not erased, and only of
  questions still visible. The caller must make sure ``viewer_id`` is the authenticated viewer.

Windows are evaluated at read time against the event times stored by the processor, so they
expire by themselves without any event arriving. Every method takes an optional ``now_ms``.

Shards (issue #16, :mod:`contracts.layout`): the reader serves one namespace's
``layout`` (a ``StoreLayout``; ``ProofReader(redis, ns, shards=N)``, one shard by default: the
keys and answers of a single node unchanged), on one Redis or a Redis Cluster alike. A product's
counters, friends_bought and activity are read in the product's shard; ``bought_via_shares`` in
the referrals shard. The read scripts run in one shard each: ``KEYS[1]`` is a key of that shard
(how the cluster client routes them) and every key they touch is built from the shard's prefix in
``ARGV[1]``. Trending runs its script in every product shard and merges (exact: a product lives
in one shard, and each shard returns at least its ``limit`` best with ties); notes are merged
from every product shard as the processor caps one shard's (per UTC day the first
``QUESTION_NOTES_PER_DAY`` by (ask time, id), the newest ``NOTES_KEEP``), and shown only if every
shard says the viewer allows them and is not erased (user facts are replicated). The fan-out
reads are one non-transactional pipeline: one round trip, and at most one connection, per node.
``reader.keys`` stays the base prefix's ``Keys`` (channels, the namespace's name).

Latency (measured for #16): the same shop (tools.loadgen: 300 users, 200 products, 8,000
events) on one Redis with 1 and with 4 shards and on a local 3-master cluster (redis 7.0.15) with
12, written by the counter store; 400 sequential reads of each kind through this reader,
interleaved over the three in one run, 3 runs on the 2-core machine while other tests loaded it
(load 5-7, so the p99s, 2-10 ms, are mostly that noise). Medians, one/1 : one/4 : cluster/12:
``read`` 0.30 : 0.29 : 0.48 ms, 0.40 : 0.38 : 0.64 ms, 0.83 : 0.74 : 1.26 ms; ``read_personal``
0.36 : 0.35 : 0.55 ms; ``read_many`` of 20 3.2 : 3.2 : 4.5 ms; ``trending`` 0.52 : 0.91 : 1.9
ms; ``notes`` 0.17 : 0.22 : 0.50 ms. So the cluster costs ~1.6x on a proof read (+0.2-0.4 ms:
it asks two masters in parallel, its product's shard and the referrals shard for ``via``) and
~2-4x on trending and notes (every master). The three layouts gave identical proofs and
trending.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)

from contracts.layout import StoreLayout
from contracts.views import (
    BOUGHT_WINDOWS_MS,
    DAY_MS,
    FEED_KEEP,
    HOUR_MS,
    NOTES_KEEP,
    QUESTION_NOTES_PER_DAY,
    SHARE_WINDOWS_MS,
    TRENDING_HOURS,
    Keys,
)

MAX_FRIEND_NAMES = 3
#: what a read raises when the store cannot answer it: redis-py's errors, and on a Redis Cluster
#: also its client's own (no node reachable, a slot not covered) outside that hierarchy
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)
#: of those, what answers 503 beyond the connection errors and timeouts every service maps: a
#: cluster that cannot serve a slot yet (a master down, a slot migrating) or reach any node
CLUSTER_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisClusterException,
    ClusterDownError,
    TryAgainError,
)
#: "bought through friends' shares": distinct credited buyers by their credited purchase's time
VIA_WINDOWS_MS: dict[str, int] = {label: BOUGHT_WINDOWS_MS[label] for label in ("24h", "7d")}


class BoughtCounts(BaseModel):
    h1: int = Field(alias="1h", serialization_alias="1h", description="distinct buyers, last hour")
    h24: int = Field(alias="24h", serialization_alias="24h", description="distinct buyers, 24 h")
    d7: int = Field(alias="7d", serialization_alias="7d", description="distinct buyers, 7 days")


class ViaShares(BaseModel):
    """Distinct buyers whose purchase is credited to a friend's share link (issue #17)."""

    h24: int = Field(default=0, serialization_alias="24h", description="credited buyers, 24 h")
    d7: int = Field(default=0, serialization_alias="7d", description="credited buyers, 7 days")


def _no_stars() -> dict[str, int]:
    return {str(stars): 0 for stars in range(1, 6)}


class ReviewSummary(BaseModel):
    count: int = Field(
        default=0,
        description="live reviews; only verified ones when the shop shows verified reviews only "
        "(SOCIALPROOF_REVIEWS_VERIFIED_ONLY)",
    )
    average: float | None = Field(default=None, description="two decimals; null without reviews")
    histogram: dict[str, int] = Field(default_factory=_no_stars, description="reviews per star")
    verified_count: int = Field(
        default=0, description="reviews by users with a kept purchase of the product"
    )
    verified_average: float | None = Field(
        default=None, description="two decimals; null without verified reviews"
    )
    verified_histogram: dict[str, int] = Field(
        default_factory=_no_stars, description="verified reviews per star"
    )


class ShareCounts(BaseModel):
    h1: int = Field(default=0, serialization_alias="1h")
    h24: int = Field(default=0, serialization_alias="24h")
    total: int = 0
    by_channel: dict[str, int] = Field(default_factory=dict)


class QuestionCounts(BaseModel):
    count: int = Field(default=0, description="visible questions about the product")
    answered: int = Field(default=0, description="visible questions with a visible answer")
    answered_by_buyers: int = Field(
        default=0, description="visible questions with a visible answer by a verified buyer"
    )


class Proof(BaseModel):
    product_id: str
    bought: BoughtCounts
    bought_via_shares: ViaShares = Field(
        default_factory=ViaShares,
        description="distinct buyers who bought through a friend's share link (first touch)",
    )
    reviews: ReviewSummary
    shares: ShareCounts
    questions: QuestionCounts = Field(default_factory=QuestionCounts)
    as_of: datetime


class FriendsBought(BaseModel):
    count: int = Field(description="friends with a kept purchase who share purchases with friends")
    names: list[str] = Field(description="up to 3 of their first names")


class TrendingProduct(BaseModel):
    product_id: str
    score: int = Field(description="sum of kind weight x (24 - age in hours) over the last 24 h")


class Activity(BaseModel):
    kind: Literal["bought", "reviewed", "shared"]
    first_name: str
    occurred_at: datetime


class Note(BaseModel):
    """A notification for one viewer: a question was asked about a product they bought."""

    kind: Literal["question"] = "question"
    question_id: str
    product_id: str
    at: datetime = Field(description="when the question was asked (event time)")

    @property
    def key(self) -> tuple[int, str]:
        """Its place in the viewer's notes: (event ms, question id), as the zset orders them."""
        return round(self.at.timestamp() * 1000), self.question_id


def _lua(name: str) -> str:
    """A read script from ``lua/`` (Lua in its own files, loaded once at import)."""
    return (Path(__file__).parent / "lua" / f"{name}.lua").read_text(encoding="utf-8")


_KINDS = {"b": "bought", "r": "reviewed", "s": "shared"}

#: notes read per viewer at most (the processor keeps the newest NOTES_KEEP, 50)
NOTES_READ = 100

# The read scripts run in one shard each: KEYS[1] is a key of that shard (what a cluster client
# routes by, see _route), ARGV[1] the shard's prefix that every key they touch is built from.

# ARGV: prefix, viewer, limit. Returns {allowed, question id, ms, product, ...}, newest first:
# allowed is '1' when the viewer allows question notifications and is not erased (else nothing
# more); product is '' for a question hidden or gone.
NOTES_LUA = _lua("notes")

# ARGV: ns, viewer, product, max names. Returns {count, name, name, ...}.
FRIENDS_LUA = _lua("friends_bought")

# ARGV: ns, now hour, hours, limit. Returns {product, score, ...} for every product whose score
# is at least the limit-th best (ties included, so the caller's tie-break is exact).
TRENDING_LUA = _lua("trending")

# ARGV: ns, product, limit, scan limit. Returns {kind, first name, ms, ...}, newest first,
# only users not erased who allow the feed and have a first name.
ACTIVITY_LUA = _lua("activity")


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _stars(raw: dict[str, str], prefix: str) -> tuple[int, float | None, dict[str, int]]:
    """(count, average, histogram) from ``{prefix}count``, ``{prefix}sum``, ``{prefix}h1..5``
    (``count``/``sum``/``h1`` or ``vcount``/``vsum``/``vh1``); absent fields are zeros."""
    count = int(raw.get(f"{prefix}count", 0))
    histogram = {str(stars): int(raw.get(f"{prefix}h{stars}", 0)) for stars in range(1, 6)}
    if count <= 0:
        return 0, None, histogram
    average = (Decimal(int(raw.get(f"{prefix}sum", 0))) / count).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    return count, float(average), histogram


def review_summary(raw: dict[str, str], verified_only: bool = False) -> ReviewSummary:
    """A product's review summary from its ``{ns}:reviews:{p}`` hash. ``verified_only`` (the
    shop hides unverified reviews from summaries): ``count``/``average``/``histogram`` are the
    verified figures too."""
    vcount, vaverage, vhistogram = _stars(raw, "v")
    count, average, histogram = (
        (vcount, vaverage, dict(vhistogram)) if verified_only else _stars(raw, "")
    )
    return ReviewSummary(
        count=count,
        average=average,
        histogram=histogram,
        verified_count=vcount,
        verified_average=vaverage,
        verified_histogram=vhistogram,
    )


def question_counts(raw: dict[str, str]) -> QuestionCounts:
    """A product's question counts from its ``{ns}:qa:{p}`` hash (absent: zeros)."""
    return QuestionCounts(
        count=int(raw.get("questions", 0)),
        answered=int(raw.get("answered", 0)),
        answered_by_buyers=int(raw.get("answered_by_buyers", 0)),
    )


def qa_key(keys: Keys, product_id: str) -> str:
    """``{ns}:qa:{product}``: question counts (the layout of issue #19; contracts.views)."""
    return f"{keys.ns}:qa:{product_id}"


class ProofReader:
    def __init__(
        self,
        redis: aioredis.Redis | AsyncRedisCluster,
        namespace: str,
        default_show_in_activity_feed: bool = False,
        reviews_verified_only: bool = False,
        shards: int = 1,
        concurrency: int | None = None,
    ) -> None:
        self.use(redis, concurrency)
        #: the served namespace's shards (contracts.layout); the app replaces it when
        #: ``replay rebuild --switch`` makes another namespace active
        self.layout = StoreLayout(namespace, shards)
        #: SOCIALPROOF_REVIEWS_VERIFIED_ONLY: review count/average/histogram are verified ones
        self.reviews_verified_only = reviews_verified_only
        #: feed consent of users who never chose (SOCIALPROOF_DEFAULT_SHOW_IN_ACTIVITY_FEED)
        self._default_feed = "1" if default_show_in_activity_feed else "0"

    def use(
        self, redis: aioredis.Redis | AsyncRedisCluster, concurrency: int | None = None
    ) -> None:
        """Read through ``redis`` from now on (the app switches to the cluster client when a
        store that did not answer at start turns out to be a Redis Cluster).

        ``concurrency``: at most that many reads at a time (None: no limit). The app sets it on
        a cluster, whose client cannot wait for a free connection: each read takes at most one
        connection per node, so ``max_connections`` reads never exhaust a node's."""
        self.redis = redis
        self._gate: AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(concurrency) if concurrency else nullcontext()
        )
        self._friends = redis.register_script(FRIENDS_LUA)
        self._trending = redis.register_script(TRENDING_LUA)
        self._activity = redis.register_script(ACTIVITY_LUA)
        self._notes = redis.register_script(NOTES_LUA)

    @property
    def layout(self) -> StoreLayout:
        return self._layout

    @layout.setter
    def layout(self, layout: StoreLayout) -> None:
        # one assignment replaces everything a read derives from the layout, so a read that
        # started on the old namespace ends on it (it holds its own references)
        self._layout = layout
        self._keys = Keys(layout.namespace)
        self._shards = tuple(Keys(prefix) for prefix in layout.product_prefixes)
        self._referrals = Keys(layout.referrals_prefix)

    @property
    def keys(self) -> Keys:
        """Keys of the served namespace's base prefix (the namespace itself): with one shard
        every key, sharded only the channels and the namespace's name (``keys.ns``)."""
        return self._keys

    def _product_keys(self, product_id: str) -> Keys:
        """Keys of the product's shard (the namespace itself with one shard)."""
        shards = self._shards
        return shards[0] if len(shards) == 1 else shards[self._layout.shard_of(product_id)]

    async def _pipelined(
        self, queue: Callable[[Pipeline], None], script: str | None = None
    ) -> list[Any]:
        """One non-transactional pipeline (on a cluster one per node, sent concurrently; at most
        one connection per node); a script it runs by EVALSHA is loaded and the pipeline sent
        again if the node lost it (Redis restarted or flushed its scripts)."""
        async with self._gate:
            for attempt in range(2):
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        queue(pipe)
                        return await pipe.execute()
                except NoScriptError:
                    if attempt or script is None:
                        raise
                    await self.redis.script_load(script)  # on a cluster: on every master
        raise AssertionError("unreachable")

    async def read_many(self, product_ids: list[str], now_ms: int | None = None) -> list[Proof]:
        """One pipelined round trip for any number of products."""
        now_ms = _now_ms(now_ms)
        replies = await self._pipelined(
            lambda pipe: self._queue_counters(pipe, product_ids, now_ms)
        )
        return self._proofs(product_ids, replies, now_ms)

    async def read_personal(
        self, product_id: str, viewer_id: str, now_ms: int | None = None
    ) -> tuple[Proof, tuple[int, list[str]]]:
        """``read(product_id)`` and ``friends_bought(viewer_id, product_id)`` in one round trip
        (the read API's most common miss). The caller must make sure ``viewer_id`` is the
        authenticated viewer."""
        now_ms = _now_ms(now_ms)
        shard = self._product_keys(product_id)

        def queue(pipe: Pipeline) -> None:
            self._queue_counters(pipe, [product_id], now_ms)
            # EVALSHA itself: a pipeline running a Script object first asks SCRIPT EXISTS
            pipe.evalsha(
                self._friends.sha,
                1,
                _route(shard),
                shard.ns,
                viewer_id,
                product_id,
                MAX_FRIEND_NAMES,
            )

        replies = await self._pipelined(queue, FRIENDS_LUA)
        (proof,) = self._proofs([product_id], replies[:-1], now_ms)
        friends = replies[-1]
        return proof, (int(friends[0]), [str(n) for n in friends[1:]])

    def _queue_counters(self, pipe: Pipeline, product_ids: list[str], now_ms: int) -> None:
        referrals = self._referrals
        for product_id in product_ids:
            keys = self._product_keys(product_id)
            buyers = keys.buyers(product_id)
            for window_ms in BOUGHT_WINDOWS_MS.values():
                pipe.zcount(buyers, now_ms - window_ms, "+inf")
            # referral figures live in the referrals shard (the product's own with one shard)
            via = referrals.bought_via_shares(product_id)
            for window_ms in VIA_WINDOWS_MS.values():
                pipe.zcount(via, now_ms - window_ms, "+inf")
            share_times = keys.share_times(product_id)
            for window_ms in SHARE_WINDOWS_MS.values():
                pipe.zcount(share_times, now_ms - window_ms, "+inf")
            pipe.hgetall(keys.reviews(product_id))
            pipe.hgetall(keys.shares(product_id))
            pipe.hgetall(qa_key(keys, product_id))

    def _proofs(self, product_ids: list[str], replies: list, now_ms: int) -> list[Proof]:
        as_of = datetime.fromtimestamp(now_ms / 1000, UTC)
        nb, nv = len(BOUGHT_WINDOWS_MS), len(VIA_WINDOWS_MS)
        width = nb + nv + len(SHARE_WINDOWS_MS) + 3
        proofs = []
        for i, product_id in enumerate(product_ids):
            row = replies[i * width : (i + 1) * width]
            bought = dict(zip(BOUGHT_WINDOWS_MS, row[:nb], strict=True))
            via24, via7 = row[nb : nb + nv]
            h1, h24 = row[nb + nv : nb + nv + 2]
            reviews_raw, shares_raw, qa_raw = row[-3:]
            by_channel = {
                field[3:]: int(v)
                for field, v in sorted(shares_raw.items())
                if field.startswith("ch:") and int(v) > 0
            }
            proofs.append(
                Proof(
                    product_id=product_id,
                    bought=BoughtCounts.model_validate(bought),
                    bought_via_shares=ViaShares(h24=via24, d7=via7),
                    reviews=review_summary(reviews_raw, self.reviews_verified_only),
                    shares=ShareCounts(
                        h1=h1, h24=h24, total=int(shares_raw.get("total", 0)), by_channel=by_channel
                    ),
                    questions=question_counts(qa_raw),
                    as_of=as_of,
                )
            )
        return proofs

    async def _each_shard(
        self, script: AsyncScript, source: str, args: Callable[[Keys], tuple]
    ) -> list[Any]:
        """A read script run in every product shard, in one pipeline (one round trip per node);
        its replies in shard order."""
        shards = self._shards
        if len(shards) == 1:
            async with self._gate:
                return [await script(keys=[_route(shards[0])], args=args(shards[0]))]

        def queue(pipe: Pipeline) -> None:
            for shard in shards:
                pipe.evalsha(script.sha, 1, _route(shard), *args(shard))

        return await self._pipelined(queue, source)

    async def read(self, product_id: str, now_ms: int | None = None) -> Proof:
        return (await self.read_many([product_id], now_ms))[0]

    async def friends_bought(self, viewer_id: str, product_id: str) -> tuple[int, list[str]]:
        """How many of the viewer's friends bought the product (kept, consenting), and up to
        three of their first names. One script call: one SINTER + at most a few name lookups."""
        shard = self._product_keys(product_id)
        async with self._gate:
            reply = await self._friends(
                keys=[_route(shard)], args=[shard.ns, viewer_id, product_id, MAX_FRIEND_NAMES]
            )
        return int(reply[0]), [str(n) for n in reply[1:]]

    async def trending(self, limit: int = 50, now_ms: int | None = None) -> list[TrendingProduct]:
        """Top products by weighted activity in the last 24 event-time hours, best first (ties
        by product id)."""
        if limit <= 0:
            return []
        now_hour = _now_ms(now_ms) // HOUR_MS
        # each shard answers for its own products (a product lives in one shard), at least its
        # limit best with ties: the best ``limit`` of all are among them, so the merge is exact
        replies = await self._each_shard(
            self._trending, TRENDING_LUA, lambda shard: (shard.ns, now_hour, TRENDING_HOURS, limit)
        )
        ranked = [
            TrendingProduct(product_id=reply[i], score=round(float(reply[i + 1])))
            for reply in replies
            for i in range(0, len(reply), 2)
        ]
        ranked.sort(key=lambda t: (-t.score, t.product_id))
        return [t for t in ranked if t.score > 0][:limit]

    async def activity(self, product_id: str, limit: int = 20) -> list[Activity]:
        """The newest activities of users who allow the feed (first names only), newest first."""
        if limit <= 0:
            return []
        shard = self._product_keys(product_id)
        async with self._gate:
            reply = await self._activity(
                keys=[_route(shard)],
                args=[shard.ns, product_id, limit, FEED_KEEP, self._default_feed],
            )
        return [
            Activity(
                kind=_KINDS[reply[i]],
                first_name=reply[i + 1],
                occurred_at=datetime.fromtimestamp(int(float(reply[i + 2])) / 1000, UTC),
            )
            for i in range(0, len(reply), 3)
        ]

    async def notes(self, viewer_id: str, limit: int = NOTES_READ) -> list[Note]:
        """The viewer's question notifications, newest first (see the module docstring)."""
        if limit <= 0:
            return []
        replies = await self._each_shard(
            self._notes, NOTES_LUA, lambda shard: (shard.ns, viewer_id, NOTES_READ)
        )
        # consent and erasure are replicated: every shard must allow (one that has not applied
        # a withdrawal or an erasure yet never shows notes another shard already hides)
        if not all(reply and reply[0] == "1" for reply in replies):
            return []
        entries = [
            (int(float(reply[i + 1])), reply[i], reply[i + 2])
            for reply in replies
            for i in range(1, len(reply), 3)
        ]
        if len(replies) > 1:
            entries = merge_notes(entries)
        return [
            Note(
                question_id=question_id,
                product_id=product_id,
                at=datetime.fromtimestamp(ms / 1000, UTC),
            )
            for ms, question_id, product_id in entries
            if product_id  # hidden or gone since it was noted
        ][:limit]


def _route(keys: Keys) -> str:
    """A key of a shard, given as a read script's KEYS[1] (unused by it): what a cluster client
    routes the call by. Every key the script touches is built from the same prefix (its
    ARGV[1]), so all are in that shard's slot."""
    return keys.erased


def merge_notes(entries: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """A viewer's notes of every product shard, ``(ask ms, question id, product)``, merged as
    the processor caps one shard's (contracts.views ``notes``): of each UTC day the first
    ``QUESTION_NOTES_PER_DAY`` by (ask time, question id), of those the newest ``NOTES_KEEP``,
    newest first. A shard of a sharded layout keeps its newest ``NOTES_KEEP +
    QUESTION_NOTES_PER_DAY - 1`` (services/counters/store.py says why), which holds every note
    of its products that the merge keeps (the processor's day-set expiry aside, as with one
    shard). Not applied with one shard (its notes are the processor's exactly)."""
    per_day: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    for entry in set(entries):
        per_day[entry[0] // DAY_MS].append(entry)
    capped = [e for day in per_day.values() for e in sorted(day)[:QUESTION_NOTES_PER_DAY]]
    return sorted(capped, key=lambda e: (e[0], e[1]), reverse=True)[:NOTES_KEEP]


def to_json(proof: Proof) -> dict:
    return proof.model_dump(mode="json", by_alias=True)
