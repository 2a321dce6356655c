"""What the social service keeps in, and reads from, Redis: rolling-hour limits, Q&A reports,
verified buyers.

Its own keys, shared by every process of the service, sit outside the serving namespaces (under
``socialproof:<SOCIALPROOF_REDIS_NAMESPACE>:social:``, beside the namespace pointer of
:mod:`contracts.namespaces`) so that a rebuild dropping an old namespace keeps them:

- ``…:social:posts:{user}``       zset  the user's recent questions and answers (member: a random
                                        id, score: ms), for the rolling-hour limit
                                        (``SOCIALPROOF_QA_POSTS_PER_HOUR``); expires after an hour
- ``…:social:links:{user}``       zset  the user's recent shares, each a new referral link (same
                                        shape), for ``SOCIALPROOF_SHARE_LINKS_PER_HOUR``
- ``…:social:reports:{target}:{id}``  hash  reporter -> reason, one report per user; at
                                        ``SOCIALPROOF_QA_REPORTS_TO_HIDE`` of them the service
                                        publishes ``qa.moderated`` hidden=true, reason
                                        ``reported``
- ``…:social:reporter:{user}``    set   ``{target}:{id}`` the user reported (erasure removes
                                        their reports)

Reports are requests, not events: Kafka holds the moderation they lead to, not the reports.

It reads one view of the stream processor (:mod:`contracts.views`): a user is a **verified
buyer** of a product iff ``{ns}:ub:{product}|{user}`` exists (a kept purchase), in the namespace
readers serve now (the pointer is read on each call, so a rebuild's switch is followed at once),
in the product's shard of that namespace (:mod:`contracts.layout`: the shard count is recorded
in the same pointer hash; with one shard, on one Redis by default, the key is exactly that).
A Redis outage raises (the app answers 503): never a guess.

On a Redis Cluster (``REDIS_URL`` names a cluster node) the same keys work: every script and
every MULTI names one key, and what touches several keys is split into single-key commands in
an order that a failure part-way leaves safe (:meth:`QaStore.report`,
:meth:`QaStore.forget_user`). The keys carry no hash tag, so a cluster spreads them over its
masters; their names did not change, so nothing migrates.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, get_args

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from contracts import namespaces
from contracts.layout import StoreLayout, resolve_shards

Target = Literal["question", "answer"]
#: what is limited per user and rolling hour: Q&A posts, share links
Limited = Literal["posts", "links"]
HOUR_MS = 3_600_000

#: the rolling-hour limits, atomically: ``posts_limit.lua`` (its header says the arguments)
TAKE_LUA = (Path(__file__).parent / "posts_limit.lua").read_text(encoding="utf-8")


class QaStore:
    def __init__(self, redis: aioredis.Redis | AsyncRedisCluster, base_namespace: str) -> None:
        self.redis, self.base = redis, base_namespace
        #: a Redis Cluster: the processor's views are sharded (contracts/layout.py)
        self.cluster = isinstance(redis, AsyncRedisCluster)
        self.prefix = f"socialproof:{base_namespace}:social"
        self._take = redis.register_script(TAKE_LUA)

    # --- the rolling-hour limits on posts and links --------------------------------------------

    def _limited(self, kind: Limited, user_id: str) -> str:
        return f"{self.prefix}:{kind}:{user_id}"

    async def take(self, kind: Limited, user_id: str, per_hour: int) -> tuple[str | None, int]:
        """(a slot to :meth:`release` if the write fails, 0) or (None, seconds to wait)."""
        slot = uuid.uuid4().hex
        now = int(time.time() * 1000)
        taken, wait_ms = await self._take(
            keys=[self._limited(kind, user_id)], args=[now, HOUR_MS, per_hour, slot]
        )
        if taken:
            return slot, 0
        return None, max(1, math.ceil(int(wait_ms) / 1000))

    async def release(self, kind: Limited, user_id: str, slot: str) -> None:
        await self.redis.zrem(self._limited(kind, user_id), slot)

    # --- reports --------------------------------------------------------------------------------

    def _reports(self, target: Target, target_id: str) -> str:
        return f"{self.prefix}:reports:{target}:{target_id}"

    def _reporter(self, user_id: str) -> str:
        return f"{self.prefix}:reporter:{user_id}"

    async def report(self, target: Target, target_id: str, user_id: str, reason: str) -> int:
        """Record one user's report (a second one by the same user changes nothing); how many
        users reported the target.

        The target's reports and the reporter's set are different keys, which on a Redis
        Cluster live in different slots, so they are two steps: first the entry erasure
        follows, then the report with its count (one MULTI on one key). A failure between
        leaves an entry without a report (erasure deletes nothing for it), never a report
        that erasure cannot find."""
        key = self._reports(target, target_id)
        await self.redis.sadd(self._reporter(user_id), f"{target}:{target_id}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, user_id, reason)
            pipe.hlen(key)
            _, count = await pipe.execute()
        return int(count)

    async def reports(self, target: Target, target_id: str) -> int:
        return int(await self.redis.hlen(self._reports(target, target_id)))

    async def forget_user(self, user_id: str) -> None:
        """Erasure: the user's reports and post and link times go.

        Each command names one key (a cluster spreads them over slots): the reports and the
        limits first, the set that lists the reports last, so a failure part-way (503; the
        client retries the erasure) leaves that set for the retry to finish from."""
        reporter = self._reporter(user_id)
        reported = await self.redis.smembers(reporter)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in reported:
                target, _, target_id = entry.partition(":")
                pipe.hdel(self._reports(target, target_id), user_id)  # type: ignore[arg-type]
            for kind in get_args(Limited):
                pipe.delete(self._limited(kind, user_id))
            await pipe.execute()
        await self.redis.delete(reporter)

    # --- verified buyers (the stream processor's view) -----------------------------------------

    async def verified_buyers(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (product, user) pairs where the user has a kept purchase of the product: each
        pair's ``ub`` key in its product's shard of the namespace readers serve."""
        wanted = list(dict.fromkeys(pairs))
        if not wanted:
            return set()
        pointer = await self.redis.hgetall(namespaces.pointer_key(self.base))
        active = namespaces.parse(pointer, self.base).active
        layout = StoreLayout(active, resolve_shards(pointer, active, self.cluster))
        async with self.redis.pipeline(transaction=False) as pipe:
            for product_id, user_id in wanted:
                pipe.exists(layout.product_keys(product_id).user_buys(product_id, user_id))
            found = await pipe.execute()
        return {pair for pair, n in zip(wanted, found, strict=True) if n}
