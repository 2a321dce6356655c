-- Referral attribution: a part of the counter store's one script. store.py puts promotions.lua
-- and this file before counters.lua; counters.lua builds the hooks once per call
-- (``referral_hooks``) and calls them after it recorded its own facts of an event (before, for
-- an erasure), so a purchase, refund, cancellation or erasure changes counters, attribution and
-- rewards in the same atomic call. Key layout: contracts/views.py ("Referrals and promotions");
-- the rules: services/counters/store.py.
--
-- Everything here is a function of facts, recomputed where a fact changes, like the counters:
--   ro:{o}, link:{t}                       referred purchases and share links (facts)
--   rb:{p}|{b} <- reref()                  b's kept, known-link, not-own referred orders of p
--   credit/via/sharers/credits <- recredit()   the first member of rb, and what it counts in;
--                                          the promotions of p follow (promotions.lua)
-- A duplicate changes no fact, so nothing moves. Cost: a purchase without referral or coupon and
-- a share without a link call nothing here; a refund or cancellation of an order that was not
-- referred costs one HGETALL of a missing key.

local function referral_hooks(ns, erased, mark, note, newer_than)
  local engine = promotion_engine(ns, note, newer_than)
  local promos_of, affect = engine.promos_of, engine.affect
  local sub = string.sub
  local hooks = {define = engine.define, ended = engine.ended, category = engine.category}

  -- the credit for b's purchases of p follows the first member of rb:{p}|{b}. ``added``: order
  -- o (sharer s, ms ts) just joined rb, so it is the first iff it comes before the credited one
  -- (ties of ms are left to the zset's own order); else the first is read
  local function recredit(p, b, added, o, s, ts)
    local ckey = ns..':credit:'..p..'|'..b
    local old = redis.call('HMGET', ckey, 'o', 's', 'ts')
    if added then
      local ots = old[3] and tonumber(old[3])
      if ots and (ts > ots or (ts == ots and o == old[1])) then return end
    end
    if not added or (old[3] and ts == tonumber(old[3])) then
      local first = redis.call('ZRANGE', ns..':rb:'..p..'|'..b, 0, 0, 'WITHSCORES')
      o, ts = first[1], first[2]
      if (o or false) == old[1] then return end
      if o then
        s = redis.call('HGET', ns..':link:'..redis.call('HGET', ns..':ro:'..o, 't'), 'u')
      end
    end
    local member, touched = p..'|'..b, {}
    if old[1] then
      redis.call('ZREM', ns..':credits:'..old[2], member)
      if tonumber(redis.call('ZINCRBY', ns..':sharers:'..p, -1, old[2])) <= 0 then
        redis.call('ZREM', ns..':sharers:'..p, old[2])
      end
      table.insert(touched, old[2])
    end
    if o then
      redis.call('HSET', ckey, 'o', o, 's', s, 'ts', ts)
      redis.call('ZADD', ns..':credits:'..s, ts, member)
      redis.call('ZINCRBY', ns..':sharers:'..p, 1, s)
      redis.call('ZADD', ns..':via:'..p, ts, b)
      if s ~= old[2] then table.insert(touched, s) end
    else
      redis.call('DEL', ckey)
      redis.call('ZREM', ns..':via:'..p, b)
    end
    mark(p)
    for _, P in ipairs(promos_of(p)) do affect(P, touched, {b}) end
  end
  -- order o's line of p is in rb:{p}|{b} iff kept (counters' ub; ``kept``: the caller knows),
  -- its link known (sharer s) and not b's own
  local function reref(o, p, b, s, ts, kept)
    local key = ns..':rb:'..p..'|'..b
    if kept == nil and s and s ~= b then
      kept = redis.call('HEXISTS', ns..':ub:'..p..'|'..b, o) == 1
    end
    if s and s ~= b and kept then
      if redis.call('ZADD', key, ts, o) == 1 then recredit(p, b, true, o, s, tonumber(ts)) end
    elseif redis.call('ZREM', key, o) == 1 then
      recredit(p, b, false)
    end
  end
  local function referred(o) -- ro:{o} as {u, t, ts, products}, nil if not referred
    local all = redis.call('HGETALL', ns..':ro:'..o)
    if #all == 0 then return nil end
    local r = {products = {}}
    for i = 1, #all, 2 do
      local f = all[i]
      if sub(f, 1, 2) == 'q:' then table.insert(r.products, sub(f, 3)) else r[f] = all[i + 1] end
    end
    return r
  end
  local function reattribute(o, r, s)
    for _, p in ipairs(r.products) do reref(o, p, r.u, s, r.ts) end
  end

  -- purchase: order, buyer, ts, event id, {product, qty, ...}, link token or '', coupon or nil,
  -- the products counters keep of it (nil: not recorded by this call)
  function hooks.purchase(o, b, ts, eid, lines, token, code, kept)
    if erased(b) then return end
    engine.context('changed', ts)
    local fields = {'HSET', ns..':ro:'..o, 'u', b, 't', token, 'ts', ts}
    if eid then table.insert(fields, 'eid'); table.insert(fields, eid) end
    for i = 1, #lines, 2 do
      table.insert(fields, 'q:'..lines[i]); table.insert(fields, lines[i + 1])
    end
    -- HSET answers how many fields were new: none for a purchase recorded already
    if token ~= '' and redis.call(unpack(fields)) > 0 then
      local s = redis.call('HGET', ns..':link:'..token, 'u')
      if s then
        redis.call('SADD', ns..':lo:'..token, o)
        for i = 1, #lines, 2 do
          reref(o, lines[i], b, s, ts, kept and (kept[lines[i]] or false))
        end
      else
        redis.call('SADD', ns..':linkwait:'..token, o)
      end
    end
    if code and code ~= '' then engine.redeem(code, b, o) end
  end

  -- share with a link token: the link, and the orders that waited for it
  function hooks.share(token, sid, s, p, ts)
    if erased(s) then return end
    -- HSET answers how many fields were new: none for a link recorded already
    if redis.call('HSET', ns..':link:'..token, 'u', s, 's', sid, 'p', p, 'ts', ts) == 0 then
      return
    end
    local waiting = redis.call('SMEMBERS', ns..':linkwait:'..token)
    if #waiting == 0 then return end
    engine.context('changed', ts)
    redis.call('DEL', ns..':linkwait:'..token)
    for _, o in ipairs(waiting) do
      redis.call('SADD', ns..':lo:'..token, o)
      local r = referred(o)
      if r then reattribute(o, r, s) end
    end
  end

  -- after counters recomputed order o (a refund or cancellation): its kept lines may have changed
  function hooks.order(o, ts)
    local r = referred(o)
    if not r then return end
    local s = redis.call('HGET', ns..':link:'..r.t, 'u')
    if not s then return end
    engine.context('refunded', ts)
    reattribute(o, r, s)
  end

  -- before counters erase u (their orders are in counters' user:{u}:orders): out of every
  -- attribution as buyer and as sharer (their orders wait as if the link were unknown, like a
  -- purchase arriving after the erasure), their rewards withdrawn (emitted) and deleted, their
  -- redemptions forgotten
  function hooks.erase(u, ts)
    engine.context('erased', ts)
    local ukey = ns..':user:'..u
    local again, pairs_ = {}, {}
    local function later(p, b)
      if not again[p..'|'..b] then again[p..'|'..b] = true; table.insert(pairs_, {p, b}) end
    end
    for _, o in ipairs(redis.call('SMEMBERS', ukey..':orders')) do
      local r = referred(o)
      if r then
        redis.call('DEL', ns..':ro:'..o)
        redis.call('SREM', ns..':linkwait:'..r.t, o)
        redis.call('SREM', ns..':lo:'..r.t, o)
        for _, p in ipairs(r.products) do
          if redis.call('ZREM', ns..':rb:'..p..'|'..u, o) == 1 then later(p, u) end
        end
      end
    end
    for _, sid in ipairs(redis.call('SMEMBERS', ukey..':shares')) do -- counters' share facts
      local token = redis.call('HGET', ns..':share:'..sid, 'lk')
      local orders = {}
      if token then
        redis.call('DEL', ns..':link:'..token)
        orders = redis.call('SMEMBERS', ns..':lo:'..token)
        redis.call('DEL', ns..':lo:'..token)
      end
      for _, o in ipairs(orders) do
        redis.call('SADD', ns..':linkwait:'..token, o)
        local r = referred(o)
        if r then
          for _, p in ipairs(r.products) do
            if redis.call('ZREM', ns..':rb:'..p..'|'..r.u, o) == 1 then later(p, r.u) end
          end
        end
      end
    end
    for _, pb in ipairs(pairs_) do recredit(pb[1], pb[2], false) end
    engine.erase(u)
    redis.call('DEL', ns..':credits:'..u)
  end

  return hooks
end
