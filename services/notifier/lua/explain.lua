-- Explain this number: the read of services/notifier/explain.py (one call per page, so a page's
-- value and its events come from one atomic read). Loaded once at import by explain.py; a wheel
-- carries this file beside the module. Keys: contracts/views.py.
--
-- ARGV[1] kind, ARGV[2] ns, ARGV[3] product, then per kind (below). Returns one JSON document.
-- Sorted sets are walked newest first from a position (score, ties already given), as
-- ZREVRANGEBYSCORE orders them (score, then member, both descending). Kinds: 'b' bought,
-- 's' shares, 'q' questions, 'f' friends_bought (ARGV[4] the viewer), 'r' reviews (no more
-- arguments: the reviewers come from {ns}:reviewers:{product}), 'v' bought_via_shares (the
-- credited buyers of via:{product}, then, with the excluded events, the product's other buyers
-- who have referred purchases of it: two phases of one sequence), 'V' the second phase's
-- referral facts of given buyers (when the walk of the product's buyers is the caller's).
--
-- KEYS[1]: a key of the shard read (only so that a Redis Cluster client routes the call there);
-- ARGV[2] is that shard's prefix (contracts/layout.py), and every key read carries it. 'b', 's',
-- 'q', 'f' and 'r' read the product's shard (user facts are replicated into it); 'v' and 'V' the
-- referrals shard. With one shard both are the namespace itself.
local kind, ns, p = ARGV[1], ARGV[2], ARGV[3]

-- walk key from (from, skip) down to min: visit(member, score) returns an item or nil; stops at
-- limit items or budget members walked. Returns items, and the next position or false.
local function walk(key, from, skip, min, limit, budget, visit)
  local items, walked = {}, 0
  local cur, ties = from, skip
  while true do
    local page = redis.call('ZREVRANGEBYSCORE', key, cur, min, 'WITHSCORES', 'LIMIT', ties, limit)
    if #page == 0 then return items, false end
    for i = 1, #page, 2 do
      local m, s = page[i], page[i + 1]
      if s == cur then ties = ties + 1 else cur, ties = s, 1 end
      walked = walked + 1
      local item = visit(m, s)
      if item then table.insert(items, item) end
      if #items >= limit or walked >= budget then
        if #redis.call('ZREVRANGEBYSCORE', key, cur, min, 'LIMIT', ties, 1) == 0 then
          return items, false
        end
        return items, {cur, ties}
      end
    end
    if #page < 2 * limit then return items, false end
  end
end

-- one user's orders of p: kept ones (ub) with their event ids, and (full) the refunded or
-- cancelled ones among the user's orders
local function buyer(u, score, full)
  local item = {u = u, s = score, kept = {}, gone = {}}
  local kept = redis.call('HGETALL', ns..':ub:'..p..'|'..u)
  local is_kept = {}
  for i = 1, #kept, 2 do
    is_kept[kept[i]] = true
    table.insert(item.kept, {kept[i], kept[i + 1], redis.call('HGET', ns..':order:'..kept[i], 'eid')})
  end
  if full then
    for _, o in ipairs(redis.call('SMEMBERS', ns..':user:'..u..':orders')) do
      if not is_kept[o] then
        local f = redis.call('HMGET', ns..':order:'..o, 'user', 'q:'..p, 'ts', 'eid', 'cancelled')
        if f[1] == u and f[2] then
          table.insert(item.gone, {o, f[3], f[4], f[5] and true or false})
        end
      end
    end
  end
  return item
end

-- b's referred purchases of p (ro:{o} of b's orders with a line of p; full: all of them, else
-- the credited one only), each with what decides it: kept (ub), cancelled, the link's sharer,
-- share and time, and the share's event id; nil when b has none. b's credit: credit:{p}|{b}.
local function referred(b, full)
  local credit = redis.call('HGET', ns..':credit:'..p..'|'..b, 'o')
  local item, orders = {u = b, credit = credit, orders = {}}, {credit}
  if full then orders = redis.call('SMEMBERS', ns..':user:'..b..':orders') end
  for _, o in ipairs(orders) do
    local r = o and redis.call('HMGET', ns..':ro:'..o, 'u', 't', 'ts', 'eid', 'q:'..p)
    if r and r[1] == b and r[5] then
      local kept = redis.call('HEXISTS', ns..':ub:'..p..'|'..b, o) == 1
      local cancelled = not kept and redis.call('HEXISTS', ns..':order:'..o, 'cancelled') == 1
      local link = redis.call('HMGET', ns..':link:'..r[2], 'u', 's', 'ts')
      local seid = link[2] and redis.call('HGET', ns..':share:'..link[2], 'eid')
      table.insert(item.orders, {o, r[3], r[4], kept, cancelled, link[1], link[2], link[3], seid})
    end
  end
  if #item.orders == 0 then return nil end
  return item
end

local out = {}
if kind == 'b' then
  -- from, skip, limit, min, window start, full
  local full = ARGV[9] == '1'
  local key = ns..':buyers:'..p
  out.value = redis.call('ZCOUNT', key, ARGV[8], '+inf')
  out.items, out.next = walk(key, ARGV[4], tonumber(ARGV[5]), ARGV[7], tonumber(ARGV[6]),
    tonumber(ARGV[6]), function(u, s) return buyer(u, s, full) end)
elseif kind == 's' then
  -- from, skip, limit, min, window start ('' none), channel ('' none), budget
  local start, channel = ARGV[8], ARGV[9]
  local key = ns..':sharets:'..p
  if channel ~= '' then
    out.value = tonumber(redis.call('HGET', ns..':shares:'..p, 'ch:'..channel) or '0')
  elseif start ~= '' then
    out.value = redis.call('ZCOUNT', key, start, '+inf')
  else
    out.value = tonumber(redis.call('HGET', ns..':shares:'..p, 'total') or '0')
  end
  out.items, out.next = walk(key, ARGV[4], tonumber(ARGV[5]), ARGV[7], tonumber(ARGV[6]),
    tonumber(ARGV[10]), function(sid, s)
      local f = redis.call('HMGET', ns..':share:'..sid, 'u', 'ch', 'ts', 'eid')
      if channel ~= '' and f[2] ~= channel then return nil end
      return {sid, f[1], f[2], s, f[4]}
    end)
elseif kind == 'q' then
  -- from, skip, limit, min, field, bit, budget, full
  local field, bit_, full = ARGV[8], tonumber(ARGV[9]), ARGV[11] == '1'
  out.value = tonumber(redis.call('HGET', ns..':qa:'..p, field) or '0')
  out.items, out.next = walk(ns..':questions:'..p, ARGV[4], tonumber(ARGV[5]), ARGV[7],
    tonumber(ARGV[6]), tonumber(ARGV[10]), function(qid, s)
      local f = redis.call('HMGET', ns..':question:'..qid, 'u', 'eid', 'c')
      local counted = bit.band(tonumber(f[3] or '0'), bit_) ~= 0
      if not counted and not full then return nil end
      return {qid, f[1], s, f[2], counted}
    end)
elseif kind == 'f' then
  -- viewer: the served count as the proof read computes it, and every friend who bought p
  local viewer = ARGV[4]
  local counted
  if redis.call('SISMEMBER', ns..':fanout', viewer) == 1 then
    counted = redis.call('ZRANGE', ns..':fb:'..viewer..'|'..p, 0, -1)
  else
    counted = redis.call('SINTER', ns..':friends:'..viewer, ns..':cbuyers:'..p)
  end
  out.value, out.counted, out.items = #counted, counted, {}
  for _, f in ipairs(redis.call('SMEMBERS', ns..':friends:'..viewer)) do
    local score = redis.call('ZSCORE', ns..':buyers:'..p, f)
    if score or redis.call('SISMEMBER', ns..':user:'..f..':products', p) == 1 then
      table.insert(out.items, buyer(f, score, true))
    end
  end
elseif kind == 'r' then
  -- every review fact of p, found through the reviewers index (in the same read as the counts,
  -- so the live ones add up to them)
  local counts = redis.call('HMGET', ns..':reviews:'..p, 'count', 'vcount')
  out.count, out.vcount, out.items = tonumber(counts[1] or '0'), tonumber(counts[2] or '0'), {}
  for _, u in ipairs(redis.call('SMEMBERS', ns..':reviewers:'..p)) do
    local r = redis.call('HMGET', ns..':review:'..p..'|'..u, 'live', 'rating', 'ts', 'eid', 'vf')
    if r[1] then table.insert(out.items, {u, r[1], r[2], r[3], r[4], r[5]}) end
  end
elseif kind == 'v' then
  -- from, skip, limit, min, window start, full, phase (1: via, 2: the other buyers), budget,
  -- split. Phase 1 walks via:{p} (credited buyers by their credited purchase; down to the
  -- window's start without the excluded events); with them, phase 2 then walks buyers:{p} (every
  -- buyer with a kept purchase) for those not in via who have referred purchases of p. Split
  -- ('1': the product's buyers are in another shard): phase 2 is not walked here; out.walk says
  -- where the caller walks it from (with 'V' for the facts), for limit - #items more buyers.
  local full, phase, budget = ARGV[9] == '1', tonumber(ARGV[10]), tonumber(ARGV[11])
  local split = ARGV[12] == '1'
  local via, limit = ns..':via:'..p, tonumber(ARGV[6])
  out.value, out.phase = redis.call('ZCOUNT', via, ARGV[8], '+inf'), phase
  local from, skip, min = ARGV[4], tonumber(ARGV[5]), ARGV[7]
  out.items, out.next = {}, false
  if phase == 1 then
    out.items, out.next = walk(via, from, skip, min, limit, budget, function(b, s)
      local item = referred(b, full)
      if item then item.s = s end
      return item
    end)
    if out.next or not full then return cjson.encode(out) end
    out.phase, from, skip, min, limit = 2, '+inf', 0, '-inf', limit - #out.items
    if limit == 0 then
      out.next = {'+inf', 0}
      return cjson.encode(out)
    end
  end
  if split then
    out.walk = {from, skip}
    return cjson.encode(out)
  end
  local more
  more, out.next = walk(ns..':buyers:'..p, from, skip, min, limit, budget, function(b)
    if redis.call('ZSCORE', via, b) then return nil end
    return referred(b, true)
  end)
  for _, item in ipairs(more) do table.insert(out.items, item) end
elseif kind == 'V' then
  -- the buyers (ARGV[4]...), in order: each one's referred purchases of p as phase 2 lists them,
  -- false for a buyer in via:{p} or without any
  local via = ns..':via:'..p
  out.items = {}
  for i = 4, #ARGV do
    local b = ARGV[i]
    out.items[i - 3] = (not redis.call('ZSCORE', via, b) and referred(b, true)) or false
  end
end
return cjson.encode(out)
