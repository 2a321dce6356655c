-- The counter store's one script: applies a chunk of operations to the serving store atomically.
-- Loaded by services/counters/store.py, which prepends the constants (HOUR, W_BUY, W_REVIEW,
-- W_SHARE, FEED_KEEP) from contracts.views; the reasoning (facts, idempotence, order
-- independence, friends_bought's fan-out) is in store.py's docstring, the key layout in
-- contracts/views.py.
--
-- ARGV[1] = namespace, ARGV[2] = JSON list of operations (see CounterStore.operation),
-- ARGV[3] = default share_purchases_with_friends 0/1, ARGV[4] = fan-out threshold.
-- Returns the product ids whose public views changed, as a JSON list.

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
