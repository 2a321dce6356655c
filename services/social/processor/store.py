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
announcement of the products whose views changed. The key layout is :mod:`contracts.views`.

friends_bought — why intersection on read (see also ``services/notifier/proof.py``):

- *Fan-out on write* (per viewer, a counter per product) costs O(friends) writes per purchase:
  a buyer with 5,000 friends turns one purchase into 5,000 writes, and every friendship, consent
  or refund change needs a matching fan-out and un-fan-out, each a new chance to drift. It also
  stores viewers x products counters, most never read.
- *Intersection on read* keeps two plain sets: ``friends:{viewer}`` and ``cbuyers:{product}``
  (buyers with a kept purchase who share purchases with friends). ``SINTERCARD`` iterates the
  smaller set and probes the other in O(1), so a 5,000-friend viewer on a 1,000,000-buyer
  product costs ~5,000 hash probes (well under the 2 ms budget; ``make bench`` measures it), and
  a purchase costs O(1) writes whatever the buyer's friend count. Friendship, consent, refund
  and erasure take effect on the very next read because nothing derived has to be updated.
- A *hybrid* (fan-out for small-degree users, intersection for celebrities) would only pay off
  if reads were far more frequent than the intersection is cheap; at ~O(min(|F|,|B|)) it is not
  needed, and one mechanism is simpler to keep correct.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable

import orjson
import redis.asyncio as aioredis

from contracts import events as ev
from contracts import namespaces
from contracts.views import FEED_KEEP, HOUR_MS, TRENDING_WEIGHTS, Keys

#: operations per script call: bounds how long one call holds Redis (a few ms)
CHUNK = 500

# ARGV[1] = namespace, ARGV[2] = JSON list of operations (see CounterStore.operation).
# Returns the product ids whose public views changed.
_CONSTANTS = (
    f"local HOUR = {HOUR_MS}\n"
    f"local W_BUY, W_REVIEW, W_SHARE = {TRENDING_WEIGHTS['bought']}, "
    f"{TRENDING_WEIGHTS['reviewed']}, {TRENDING_WEIGHTS['shared']}\n"
    f"local FEED_KEEP = {FEED_KEEP}\n"
)
APPLY_LUA = (
    _CONSTANTS
    + """
local ns = ARGV[1]
local ops = cjson.decode(ARGV[2])
-- share_purchases_with_friends of users who never chose (the shop's default, normally off)
local DEFAULT_SHARE = ARGV[3] == '1'
local changed, changed_list = {}, {}
-- housekeeping done once per call, not per event: feed trims and bucket expiries
local grown_feeds, touched_buckets = {}, {}

local function mark(p)
  if not changed[p] then changed[p] = true; table.insert(changed_list, p) end
end
-- every product a user's activity shows on (purchases, reviews, shares): their feed entries,
-- names and friend counts change with the user's consent, name or erasure
local function mark_user(u)
  local ukey = ns..':user:'..u
  for _, p in ipairs(redis.call('SMEMBERS', ukey..':products')) do mark(p) end
  for _, p in ipairs(redis.call('SMEMBERS', ukey..':reviews')) do mark(p) end
  for _, sid in ipairs(redis.call('SMEMBERS', ukey..':shares')) do
    local p = redis.call('HGET', ns..':share:'..sid, 'p')
    if p then mark(p) end
  end
end
local function erased(u) return redis.call('SISMEMBER', ns..':erased', u) == 1 end
local function newer(ts, eid, key)
  local old = redis.call('HMGET', key, 'ts', 'eid')
  if not old[1] then return true end
  local ots = tonumber(old[1])
  return ts > ots or (ts == ots and eid > old[2])
end
local function trend(ts, p, delta)
  local key = ns..':trend:'..string.format('%d', math.floor(ts / HOUR))
  local s = tonumber(redis.call('ZINCRBY', key, delta, p))
  if s <= 0 then redis.call('ZREM', key, p) else touched_buckets[key] = true end
end
local function feed_add(p, ts, member)
  local key = ns..':feed:'..p
  redis.call('ZADD', key, ts, member)
  grown_feeds[key] = true
end
local function shares_with_friends(u)
  local s = redis.call('HGET', ns..':consent:'..u, 's')
  if not s then return DEFAULT_SHARE end
  return s == '1'
end
-- counters drop to absent rather than 0, so equal states have equal keys whatever the order
local function hincr(key, field, delta)
  if redis.call('HINCRBY', key, field, delta) == 0 then redis.call('HDEL', key, field) end
end

-- one user's standing as a buyer of one product, from the facts of one order line
local function recompute(o, p, u, ts)
  local order = ns..':order:'..o
  local kept = 0
  local facts = redis.call('HMGET', order, 'cancelled', 'q:'..p)
  if not facts[1] then
    kept = tonumber(facts[2] or '0')
    for _, q in ipairs(redis.call('HVALS', ns..':refund:'..o..'|'..p)) do
      kept = kept - tonumber(q)
    end
  end
  local ub = ns..':ub:'..p..'|'..u
  local was = redis.call('HEXISTS', ub, o) == 1
  local now = kept > 0
  if was == now then return end
  local member = 'b|'..u..'|'..o
  if now then
    redis.call('HSET', ub, o, ts)
    trend(ts, p, W_BUY)
    feed_add(p, ts, member)
  else
    redis.call('HDEL', ub, o)
    trend(ts, p, -W_BUY)
    redis.call('ZREM', ns..':feed:'..p, member)
  end
  local best = nil
  for _, t in ipairs(redis.call('HVALS', ub)) do
    local v = tonumber(t)
    if best == nil or v > best then best = v end
  end
  if best ~= nil then
    redis.call('ZADD', ns..':buyers:'..p, best, u)
    if shares_with_friends(u) then redis.call('SADD', ns..':cbuyers:'..p, u) end
  else
    redis.call('ZREM', ns..':buyers:'..p, u)
    redis.call('SREM', ns..':cbuyers:'..p, u)
  end
  mark(p)
end

local function recompute_order(o)
  local order = ns..':order:'..o
  local owner = redis.call('HGET', order, 'user')
  if not owner then return end -- the purchase has not arrived; its recompute will apply this
  local ts = tonumber(redis.call('HGET', order, 'ts'))
  for _, field in ipairs(redis.call('HKEYS', order)) do
    if string.sub(field, 1, 2) == 'q:' then recompute(o, string.sub(field, 3), owner, ts) end
  end
end

-- a review's contribution to the product's summary, trend and feed (+1 adds, -1 removes)
local function review_effect(p, u, rating, ts, sign)
  local key = ns..':reviews:'..p
  hincr(key, 'count', sign)
  hincr(key, 'sum', sign * rating)
  hincr(key, 'h'..rating, sign)
  trend(ts, p, sign * W_REVIEW)
  if sign > 0 then feed_add(p, ts, 'r|'..u) else redis.call('ZREM', ns..':feed:'..p, 'r|'..u) end
end

local function share_effect(sid, p, u, ch, ts, sign)
  hincr(ns..':shares:'..p, 'total', sign)
  hincr(ns..':shares:'..p, 'ch:'..ch, sign)
  trend(ts, p, sign * W_SHARE)
  local member = 's|'..u..'|'..sid
  if sign > 0 then
    redis.call('ZADD', ns..':sharets:'..p, ts, sid)
    feed_add(p, ts, member)
  else
    redis.call('ZREM', ns..':sharets:'..p, sid)
    redis.call('ZREM', ns..':feed:'..p, member)
  end
end

local function erase(u)
  redis.call('SADD', ns..':erased', u)
  local ukey = ns..':user:'..u
  mark_user(u)
  for _, p in ipairs(redis.call('SMEMBERS', ukey..':products')) do
    local ub = ns..':ub:'..p..'|'..u
    local kept = redis.call('HGETALL', ub)
    for i = 1, #kept, 2 do
      trend(tonumber(kept[i + 1]), p, -W_BUY)
      redis.call('ZREM', ns..':feed:'..p, 'b|'..u..'|'..kept[i])
    end
    redis.call('DEL', ub)
    redis.call('ZREM', ns..':buyers:'..p, u)
    redis.call('SREM', ns..':cbuyers:'..p, u)
  end
  for _, o in ipairs(redis.call('SMEMBERS', ukey..':orders')) do
    redis.call('DEL', ns..':order:'..o)
  end
  for _, line in ipairs(redis.call('SMEMBERS', ukey..':refunds')) do
    redis.call('DEL', ns..':refund:'..line)
  end
  for _, p in ipairs(redis.call('SMEMBERS', ukey..':reviews')) do
    local rkey = ns..':review:'..p..'|'..u
    local r = redis.call('HMGET', rkey, 'live', 'rating', 'ts')
    if r[1] == '1' then review_effect(p, u, tonumber(r[2]), tonumber(r[3]), -1) end
    redis.call('DEL', rkey)
  end
  for _, sid in ipairs(redis.call('SMEMBERS', ukey..':shares')) do
    local skey = ns..':share:'..sid
    local s = redis.call('HMGET', skey, 'p', 'ch', 'ts')
    if s[1] then share_effect(sid, s[1], u, s[2], tonumber(s[3]), -1) end
    redis.call('DEL', skey)
  end
  for _, f in ipairs(redis.call('SMEMBERS', ukey..':fr')) do
    redis.call('SREM', ns..':friends:'..f, u)
    redis.call('SREM', ns..':user:'..f..':fr', u)
    local a, b = u, f
    if b < a then a, b = f, u end
    redis.call('DEL', ns..':fr:'..a..'|'..b)
  end
  redis.call('DEL', ns..':friends:'..u, ns..':consent:'..u, ns..':name:'..u,
    ukey..':products', ukey..':orders', ukey..':refunds', ukey..':reviews', ukey..':shares', ukey..':fr')
end

for _, op in ipairs(ops) do
  local kind = op[1]
  if kind == 'P' then -- purchase: order, user, ts, {product, qty, ...}
    local o, u, ts, lines = op[2], op[3], op[4], op[5]
    if not erased(u) then
      local fields = {'HSET', ns..':order:'..o, 'user', u, 'ts', ts}
      local products = {'SADD', ns..':user:'..u..':products'}
      for i = 1, #lines, 2 do
        table.insert(fields, 'q:'..lines[i]); table.insert(fields, lines[i + 1])
        table.insert(products, lines[i])
      end
      redis.call(unpack(fields))
      redis.call(unpack(products))
      redis.call('SADD', ns..':user:'..u..':orders', o)
      for i = 1, #lines, 2 do recompute(o, lines[i], u, ts) end
    end
  elseif kind == 'R' then -- refund: order, refund id, user, {product, qty, ...}
    local o, rid, u, lines = op[2], op[3], op[4], op[5]
    if not erased(u) then
      redis.call('SADD', ns..':user:'..u..':orders', o)
      for i = 1, #lines, 2 do
        redis.call('HSET', ns..':refund:'..o..'|'..lines[i], rid, lines[i + 1])
        redis.call('SADD', ns..':user:'..u..':refunds', o..'|'..lines[i])
      end
      recompute_order(o)
    end
  elseif kind == 'C' then -- cancellation: order, user (a full refund of every line)
    local o, u = op[2], op[3]
    if not erased(u) then
      redis.call('SADD', ns..':user:'..u..':orders', o)
      redis.call('HSET', ns..':order:'..o, 'cancelled', '1')
      recompute_order(o)
    end
  elseif kind == 'V' then -- review: live 0/1, product, user, rating, ts, event id
    local live, p, u, rating, ts, eid = op[2], op[3], op[4], op[5], op[6], op[7]
    local rkey = ns..':review:'..p..'|'..u
    if not erased(u) and newer(ts, eid, rkey) then
      local old = redis.call('HMGET', rkey, 'live', 'rating', 'ts')
      if old[1] == '1' then review_effect(p, u, tonumber(old[2]), tonumber(old[3]), -1) end
      redis.call('HSET', rkey, 'live', live, 'rating', rating, 'ts', ts, 'eid', eid)
      if live == 1 then review_effect(p, u, rating, ts, 1) end
      redis.call('SADD', ns..':user:'..u..':reviews', p)
      mark(p)
    end
  elseif kind == 'S' then -- share: share id, user, product, channel, ts
    local sid, u, p, ch, ts = op[2], op[3], op[4], op[5], op[6]
    local skey = ns..':share:'..sid
    if not erased(u) and redis.call('EXISTS', skey) == 0 then
      redis.call('HSET', skey, 'p', p, 'u', u, 'ch', ch, 'ts', ts)
      redis.call('SADD', ns..':user:'..u..':shares', sid)
      share_effect(sid, p, u, ch, ts, 1)
      mark(p)
    end
  elseif kind == 'F' then -- friendship: on 0/1, user a, user b, ts, event id
    local on, a, b, ts, eid = op[2], op[3], op[4], op[5], op[6]
    if b < a then a, b = b, a end
    local fkey = ns..':fr:'..a..'|'..b
    if a ~= b and not erased(a) and not erased(b) and newer(ts, eid, fkey) then
      redis.call('HSET', fkey, 'on', on, 'ts', ts, 'eid', eid)
      redis.call('SADD', ns..':user:'..a..':fr', b)
      redis.call('SADD', ns..':user:'..b..':fr', a)
      local was = redis.call('SISMEMBER', ns..':friends:'..a, b) == 1
      if on == 1 then
        redis.call('SADD', ns..':friends:'..a, b)
        redis.call('SADD', ns..':friends:'..b, a)
      else
        redis.call('SREM', ns..':friends:'..a, b)
        redis.call('SREM', ns..':friends:'..b, a)
      end
      -- friend counts of both users' products change: announce those products
      if was ~= (on == 1) then
        for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..a..':products')) do mark(p) end
        for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..b..':products')) do mark(p) end
      end
    end
  elseif kind == 'X' then -- privacy: user, share purchases 0/1, feed 0/1, ts, event id
    local u, s, f, ts, eid = op[2], op[3], op[4], op[5], op[6]
    local ckey = ns..':consent:'..u
    if not erased(u) and newer(ts, eid, ckey) then
      redis.call('HSET', ckey, 's', s, 'f', f, 'ts', ts, 'eid', eid)
      for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..u..':products')) do
        if s == 1 and redis.call('ZSCORE', ns..':buyers:'..p, u) then
          redis.call('SADD', ns..':cbuyers:'..p, u)
        else
          redis.call('SREM', ns..':cbuyers:'..p, u)
        end
      end
      mark_user(u)
    end
  elseif kind == 'N' then -- profile: user, first name, ts, event id
    local u, name, ts, eid = op[2], op[3], op[4], op[5]
    local nkey = ns..':name:'..u
    if not erased(u) and newer(ts, eid, nkey) then
      redis.call('HSET', nkey, 'n', name, 'ts', ts, 'eid', eid)
      mark_user(u)
    end
  elseif kind == 'E' then -- erasure: user
    if not erased(op[2]) then erase(op[2]) end
  end
end
for key in pairs(grown_feeds) do redis.call('ZREMRANGEBYRANK', key, 0, -(FEED_KEEP + 1)) end
-- hourly buckets go two days after their last change
for key in pairs(touched_buckets) do redis.call('EXPIRE', key, 172800) end
return changed_list
"""
)


def _merge_lines(lines: Iterable[ev.OrderLine | ev.RefundLine]) -> list[str | int]:
    """Flatten lines into product, quantity pairs, summing a product listed twice."""
    quantities: dict[str, int] = defaultdict(int)
    for line in lines:
        quantities[line.product_id] += line.quantity
    flat: list[str | int] = []
    for product, qty in quantities.items():
        flat += [product, qty]
    return flat


def event_ms(event: ev.Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


def operation(event: ev.Event) -> list | None:
    """The script operation for one event, or None for events that feed no counter."""
    p = event.payload
    eid = str(event.event_id)
    if isinstance(event, ev.PurchaseCompleted):
        return ["P", p.order_id, p.user_id, event_ms(event), _merge_lines(p.lines)]
    if isinstance(event, ev.OrderRefunded):
        return ["R", p.order_id, p.refund_id, p.user_id, _merge_lines(p.lines)]
    if isinstance(event, ev.OrderCancelled):
        return ["C", p.order_id, p.user_id]
    if isinstance(event, ev.ReviewPosted | ev.ReviewEdited):
        return ["V", 1, p.product_id, p.user_id, p.rating, event_ms(event), eid]
    if isinstance(event, ev.ReviewDeleted):
        return ["V", 0, p.product_id, p.user_id, 0, event_ms(event), eid]
    if isinstance(event, ev.ProductShared):
        return ["S", p.share_id, p.user_id, p.product_id, p.channel, event_ms(event)]
    if isinstance(event, ev.FriendshipAdded | ev.FriendshipRemoved):
        on = 1 if isinstance(event, ev.FriendshipAdded) else 0
        return ["F", on, p.user_id, p.friend_id, event_ms(event), eid]
    if isinstance(event, ev.PrivacySettingsChanged):
        share, feed = int(p.share_purchases_with_friends), int(p.show_in_activity_feed)
        return ["X", p.user_id, share, feed, event_ms(event), eid]
    if isinstance(event, ev.UserProfileUpdated):
        return ["N", p.user_id, p.first_name, event_ms(event), eid]
    if isinstance(event, ev.UserErased):
        return ["E", p.user_id]
    return None  # catalogue events: no counter depends on them


class CounterStore:
    """Writes events into the serving store; one instance per worker process."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        default_share_purchases: bool = False,
        follow_active: bool = False,
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

    async def targets(self) -> tuple[str, ...]:
        """The namespaces this batch must be written to (first: the one readers serve)."""
        if not self.follow_active:
            return (self.keys.ns,)
        return namespaces.parse(await self.redis.hgetall(self._pointer), self.keys.ns).written

    async def apply(self, events: list[ev.Event], namespace: str | None = None) -> set[str]:
        """Apply a batch in one pipelined round trip; returns the products whose views changed."""
        ops = [op for op in map(operation, events) if op is not None]
        return await self.apply_operations(ops, namespace)

    async def apply_operations(self, ops: list[list], namespace: str | None = None) -> set[str]:
        if not ops:
            return set()
        ns = namespace or self.keys.ns
        # EVALSHA straight away (the script is loaded on first NOSCRIPT): a redis-py pipeline would
        # add a SCRIPT EXISTS round trip to every call. Chunks run concurrently; facts commute.
        results = await asyncio.gather(
            *(
                self._apply(
                    args=[ns, orjson.dumps(ops[start : start + CHUNK]), self._default_share]
                )
                for start in range(0, len(ops), CHUNK)
            )
        )
        changed: set[str] = set()
        for result in results:
            changed.update(result)
        return changed

    async def announce(self, products: set[str]) -> None:
        """One coalesced message per batch: the notifier re-reads and pushes these products."""
        if products:
            await self.redis.publish(self.keys.changes_channel, orjson.dumps(sorted(products)))
