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
from typing import Any

import orjson
import redis.asyncio as aioredis

from contracts import events as ev
from contracts import namespaces
from contracts.views import FEED_KEEP, FRIENDS_FANOUT_AT, HOUR_MS, TRENDING_WEIGHTS, Keys

#: operations per script call: bounds how long one call holds Redis (a few ms)
CHUNK = 500

# ARGV[1] = namespace, ARGV[2] = JSON list of operations (see CounterStore.operation).
# Returns the product ids whose public views changed, as a JSON list.
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
-- friendships on record from which a viewer's friends_bought is fanned out on write (0: never)
local FANOUT_AT = tonumber(ARGV[4]) or 0
local changed, changed_list = {}, {}
-- Commutative writes are collected and applied once per call, not once per event: the chunk's
-- increments of one counter become one HINCRBY/ZINCRBY, its feed and share-time entries of one
-- key one ZADD. Nothing in this script reads those keys back, so the end state is the same as
-- applying them one by one, and each redis.call saved is ~1 us of Redis' single thread.
local hash_deltas, trend_deltas, zadds = {}, {}, {}
local trimmed = {}  -- feeds to cut back to FEED_KEEP after this call's additions

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
-- which users of this call are erased: one SMISMEMBER for all of them up front (a SISMEMBER per
-- event was a tenth of the script's Redis calls); erase() below keeps it up to date within the
-- call, and a user the look-ahead missed is still asked for on first use
local erased_users = {}
do
  local users, seen = {}, {}
  local function want(u)
    if u and not seen[u] then seen[u] = true; table.insert(users, u) end
  end
  for _, op in ipairs(ops) do -- where each operation names its user(s); see the loop below
    local kind = op[1]
    if kind == 'P' or kind == 'C' or kind == 'S' then want(op[3])
    elseif kind == 'R' or kind == 'V' then want(op[4])
    elseif kind == 'F' then want(op[3]); want(op[4])
    else want(op[2]) end -- X, N, E
  end
  for start = 1, #users, 1000 do -- unpack() has a stack limit
    local slice = {unpack(users, start, math.min(start + 999, #users))}
    local flags = redis.call('SMISMEMBER', ns..':erased', unpack(slice))
    for i, u in ipairs(slice) do erased_users[u] = flags[i] == 1 end
  end
end
local function erased(u)
  local known = erased_users[u]
  if known == nil then
    known = redis.call('SISMEMBER', ns..':erased', u) == 1
    erased_users[u] = known
  end
  return known
end
-- is (ts, eid) newer than the state recorded in a fact hash? ``old`` is HMGET key ts eid …
local function newer_than(ts, eid, old)
  if not old[1] then return true end
  local ots = tonumber(old[1])
  return ts > ots or (ts == ots and eid > old[2])
end
local function newer(ts, eid, key)
  return newer_than(ts, eid, redis.call('HMGET', key, 'ts', 'eid'))
end
local function add_to(deltas, key, field, delta)
  local d = deltas[key]
  if not d then d = {}; deltas[key] = d end
  d[field] = (d[field] or 0) + delta
end
local function trend(ts, p, delta)
  add_to(trend_deltas, ns..':trend:'..string.format('%d', math.floor(ts / HOUR)), p, delta)
end
-- counters drop to absent rather than 0, so equal states have equal keys whatever the order
local function hincr(key, field, delta) add_to(hash_deltas, key, field, delta) end
local function zadd(key, score, member)
  local z = zadds[key]
  if not z then z = {}; zadds[key] = z end
  z[member] = score
end
local function zrem(key, member)
  local z = zadds[key]
  if z then z[member] = nil end
  redis.call('ZREM', key, member)
end
local function feed_add(p, ts, member)
  local key = ns..':feed:'..p
  zadd(key, ts, member)
  trimmed[key] = true
end
local function feed_remove(p, member) zrem(ns..':feed:'..p, member) end
-- friends_bought's fan-out (the module docstring): for every viewer in ``fanout``,
-- ``fb:{viewer}|{product}`` holds exactly friends:viewer ∩ cbuyers:product (a zset, every score
-- 0: small ones stay compact, and members come back in id order), and ``user:{u}:fo`` the
-- viewers in ``fanout`` that u is a friend of. Every change to a cbuyers set goes through
-- cbuyer(), every change to a fanned-out viewer's friends through link(). Nothing here reads an
-- fb key back, so additions go with the call's other collected ZADDs.
local function fb(v, p, u, on)
  local key = ns..':fb:'..v..'|'..p
  if on then zadd(key, 0, u) else zrem(key, u) end
end
local fanned_friends = {} -- user -> user:{u}:fo, read once per call
local function fanned_friends_of(u)
  local list = fanned_friends[u]
  if not list then
    list = redis.call('SMEMBERS', ns..':user:'..u..':fo')
    fanned_friends[u] = list
  end
  return list
end
local function fanned_out(v) return redis.call('SISMEMBER', ns..':fanout', v) == 1 end
local function cbuyer(p, u, on)
  if redis.call(on and 'SADD' or 'SREM', ns..':cbuyers:'..p, u) == 1 then
    for _, v in ipairs(fanned_friends_of(u)) do fb(v, p, u, on) end
  end
end
-- v (in fanout) gained (on) or lost f as a friend
local function link(v, f, on)
  redis.call(on and 'SADD' or 'SREM', ns..':user:'..f..':fo', v)
  fanned_friends[f] = nil
  for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..f..':products')) do
    if not on or redis.call('SISMEMBER', ns..':cbuyers:'..p, f) == 1 then fb(v, p, f, on) end
  end
end
-- v is fanned out while it has FANOUT_AT friendships on record (facts, which only an erasure
-- removes: the outcome does not depend on the order events arrive in, and a friendship toggled
-- back and forth does not rebuild anything); entering builds v's sets, leaving deletes them
local function refanout(v)
  local want = FANOUT_AT > 0 and redis.call('SCARD', ns..':user:'..v..':fr') >= FANOUT_AT
  if want == fanned_out(v) then return end
  if want then
    redis.call('SADD', ns..':fanout', v)
    for _, f in ipairs(redis.call('SMEMBERS', ns..':friends:'..v)) do link(v, f, true) end
  else
    redis.call('SREM', ns..':fanout', v)
    for _, f in ipairs(redis.call('SMEMBERS', ns..':user:'..v..':fr')) do link(v, f, false) end
  end
end
local function shares_with_friends(u)
  local s = redis.call('HGET', ns..':consent:'..u, 's')
  if not s then return DEFAULT_SHARE end
  return s == '1'
end

-- a kept purchase becomes visible: buyer windows, friends' counts, trend, feed
local function add_buyer(o, p, u, ts)
  redis.call('HSET', ns..':ub:'..p..'|'..u, o, ts)
  trend(ts, p, W_BUY)
  feed_add(p, ts, 'b|'..u..'|'..o)
  -- the buyer's score is their latest kept purchase: GT keeps a later one already there
  redis.call('ZADD', ns..':buyers:'..p, 'GT', ts, u)
  if shares_with_friends(u) then cbuyer(p, u, true) end
  mark(p)
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
  if now then add_buyer(o, p, u, ts); return end
  redis.call('HDEL', ub, o)
  trend(ts, p, -W_BUY)
  feed_remove(p, 'b|'..u..'|'..o)
  local best = nil
  for _, t in ipairs(redis.call('HVALS', ub)) do
    local v = tonumber(t)
    if best == nil or v > best then best = v end
  end
  if best ~= nil then
    redis.call('ZADD', ns..':buyers:'..p, best, u)
  else
    redis.call('ZREM', ns..':buyers:'..p, u)
    cbuyer(p, u, false)
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
  if sign > 0 then feed_add(p, ts, 'r|'..u) else feed_remove(p, 'r|'..u) end
end

local function share_effect(sid, p, u, ch, ts, sign)
  hincr(ns..':shares:'..p, 'total', sign)
  hincr(ns..':shares:'..p, 'ch:'..ch, sign)
  trend(ts, p, sign * W_SHARE)
  local member = 's|'..u..'|'..sid
  if sign > 0 then
    zadd(ns..':sharets:'..p, ts, sid)
    feed_add(p, ts, member)
  else
    zrem(ns..':sharets:'..p, sid)
    feed_remove(p, member)
  end
end

local function erase(u)
  redis.call('SADD', ns..':erased', u)
  erased_users[u] = true
  local ukey = ns..':user:'..u
  mark_user(u)
  if fanned_out(u) then
    redis.call('SREM', ns..':fanout', u)
    for _, f in ipairs(redis.call('SMEMBERS', ukey..':fr')) do link(u, f, false) end
  end
  for _, p in ipairs(redis.call('SMEMBERS', ukey..':products')) do
    local ub = ns..':ub:'..p..'|'..u
    local kept = redis.call('HGETALL', ub)
    for i = 1, #kept, 2 do
      trend(tonumber(kept[i + 1]), p, -W_BUY)
      feed_remove(p, 'b|'..u..'|'..kept[i])
    end
    redis.call('DEL', ub)
    redis.call('ZREM', ns..':buyers:'..p, u)
    cbuyer(p, u, false)
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
    refanout(f) -- one friendship fewer on record
  end
  redis.call('DEL', ns..':friends:'..u, ns..':consent:'..u, ns..':name:'..u,
    ukey..':products', ukey..':orders', ukey..':refunds', ukey..':reviews', ukey..':shares', ukey..':fr',
    ukey..':fo')
end

for _, op in ipairs(ops) do
  local kind = op[1]
  if kind == 'P' then -- purchase: order, user, ts, {product, qty, ...}
    local o, u, ts, lines = op[2], op[3], op[4], op[5]
    local order = ns..':order:'..o
    -- a recorded purchase (a duplicate, a redelivery) has nothing left to change
    local prev = not erased(u) and redis.call('HMGET', order, 'user', 'cancelled', 'refunded')
    if prev and not prev[1] then
      local fields = {'HSET', order, 'user', u, 'ts', ts}
      local products = {'SADD', ns..':user:'..u..':products'}
      for i = 1, #lines, 2 do
        table.insert(fields, 'q:'..lines[i]); table.insert(fields, lines[i + 1])
        table.insert(products, lines[i])
      end
      redis.call(unpack(fields))
      redis.call(unpack(products))
      redis.call('SADD', ns..':user:'..u..':orders', o)
      -- a first purchase: no line of it can be kept yet, so only an addition can follow;
      -- a cancellation or refunds that arrived first are facts already waiting
      if not prev[2] then
        for i = 1, #lines, 2 do
          local p, kept = lines[i], lines[i + 1]
          if prev[3] then
            for _, q in ipairs(redis.call('HVALS', ns..':refund:'..o..'|'..p)) do
              kept = kept - tonumber(q)
            end
          end
          if kept > 0 then add_buyer(o, p, u, ts) end
        end
      end
    end
  elseif kind == 'R' then -- refund: order, refund id, user, {product, qty, ...}
    local o, rid, u, lines = op[2], op[3], op[4], op[5]
    if not erased(u) then
      redis.call('SADD', ns..':user:'..u..':orders', o)
      -- tells the purchase (if it comes later) that there are refunds to subtract
      redis.call('HSET', ns..':order:'..o, 'refunded', '1')
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
    local old = not erased(u) and redis.call('HMGET', rkey, 'ts', 'eid', 'live', 'rating')
    if old and newer_than(ts, eid, old) then
      if old[3] == '1' then review_effect(p, u, tonumber(old[4]), tonumber(old[1]), -1) end
      redis.call('HSET', rkey, 'live', live, 'rating', rating, 'ts', ts, 'eid', eid)
      if live == 1 then review_effect(p, u, rating, ts, 1) end
      redis.call('SADD', ns..':user:'..u..':reviews', p)
      mark(p)
    end
  elseif kind == 'S' then -- share: share id, user, product, channel, ts
    local sid, u, p, ch, ts = op[2], op[3], op[4], op[5], op[6]
    local skey = ns..':share:'..sid
    -- HSET answers how many fields were new: none for a share already recorded (a duplicate)
    if not erased(u) and redis.call('HSET', skey, 'p', p, 'u', u, 'ch', ch, 'ts', ts) > 0 then
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
      local new_a = redis.call('SADD', ns..':user:'..a..':fr', b) == 1
      local new_b = redis.call('SADD', ns..':user:'..b..':fr', a) == 1
      local was = redis.call('SISMEMBER', ns..':friends:'..a, b) == 1
      if on == 1 then
        redis.call('SADD', ns..':friends:'..a, b)
        redis.call('SADD', ns..':friends:'..b, a)
      else
        redis.call('SREM', ns..':friends:'..a, b)
        redis.call('SREM', ns..':friends:'..b, a)
      end
      if new_a then refanout(a) end
      if new_b then refanout(b) end
      if was ~= (on == 1) then
        if fanned_out(a) then link(a, b, on == 1) end
        if fanned_out(b) then link(b, a, on == 1) end
        -- friend counts of both users' products change: announce those products
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
        cbuyer(p, u, s == 1 and redis.call('ZSCORE', ns..':buyers:'..p, u) ~= false)
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
-- the collected writes (see the top): increments, then additions, then feed trims
for key, fields in pairs(hash_deltas) do
  for field, delta in pairs(fields) do
    if delta ~= 0 and redis.call('HINCRBY', key, field, delta) == 0 then
      redis.call('HDEL', key, field)
    end
  end
end
for key, products in pairs(trend_deltas) do
  local kept = false
  for p, delta in pairs(products) do
    if delta ~= 0 then
      if tonumber(redis.call('ZINCRBY', key, delta, p)) <= 0 then
        redis.call('ZREM', key, p)
      else
        kept = true
      end
    end
  end
  -- hourly buckets go two days after their last change
  if kept then redis.call('EXPIRE', key, 172800) end
end
for key, members in pairs(zadds) do
  local args = {'ZADD', key}
  for member, score in pairs(members) do
    table.insert(args, score); table.insert(args, member)
    if #args >= 400 then redis.call(unpack(args)); args = {'ZADD', key} end
  end
  if #args > 2 then redis.call(unpack(args)) end
end
for key in pairs(trimmed) do redis.call('ZREMRANGEBYRANK', key, 0, -(FEED_KEEP + 1)) end
-- one JSON string rather than a multi-bulk reply of ids: the worker parses it in one call
if #changed_list == 0 then return '[]' end
return cjson.encode(changed_list)
"""
)


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
        "P", e.payload.order_id, e.payload.user_id, event_ms(e), _merge_lines(e.payload.lines)
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
        event_ms(e),
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
    ],
    ev.UserProfileUpdated: lambda e: [
        "N", e.payload.user_id, e.payload.first_name, event_ms(e), str(e.event_id)
    ],
    ev.UserErased: lambda e: ["E", e.payload.user_id],
}
_OPERATIONS[ev.ReviewEdited] = _OPERATIONS[ev.ReviewPosted]


def operation(event: ev.Event) -> list | None:
    """The script operation for one event, or None for events that feed no counter (catalogue
    events)."""
    build = _OPERATIONS.get(type(event))
    return build(event) if build is not None else None


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
        changed: set[str] = set()
        for result in results:
            changed.update(orjson.loads(result))
        return changed

    async def announce(self, products: set[str]) -> None:
        """One coalesced message per batch: the notifier re-reads and pushes these products."""
        if products:
            await self.redis.publish(self.keys.changes_channel, orjson.dumps(sorted(products)))
