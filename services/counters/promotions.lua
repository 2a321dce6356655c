-- Share-to-unlock promotions and their rewards: a part of the counter store's one script, used by
-- referrals.lua (``promotion_engine``, built once per call). It keeps, from the credits that
-- referrals.lua maintains (``credits:{sharer}``, ``via:{product}``, ``credit:{product}|{buyer}``):
--   pc/pq:{P} <- recount()       a sharer's distinct buyers in P's scope and period, and when the
--                                goal-th of them bought
--   reward statuses <- award_sharers(), rebuyer(), pin()
-- and applies promotion definitions and ends, product categories, coupon redemptions and the
-- erasure of a user's rewards. Key layout: contracts/views.py ("Referrals and promotions"); the
-- rules: services/counters/store.py.
--
-- ARGV[5] = coupon secret, ARGV[6] = outbox stream ('' = emit nothing: a rebuild's replay, a
-- shadow), ARGV[7] = the outbox's emission counters (hash reward id -> last seq emitted).

local function promotion_engine(ns, note, newer_than)
  local SECRET, OUTBOX, SEQS = ARGV[5] or '', ARGV[6] or '', ARGV[7] or ''
  -- why a reward is withdrawn (the operation being applied) and its event time, for the outbox
  local reason, now = 'changed', 0
  local find, sub = string.find, string.sub
  local engine = {}
  function engine.context(why, ts) reason, now = why, ts or 0 end

  local function split(member) -- '{product}|{buyer}' (ids never contain '|')
    local bar = find(member, '|', 1, true)
    return sub(member, 1, bar - 1), sub(member, bar + 1)
  end
  local cats = {} -- product -> category or false, read once per call
  local function category(p)
    local c = cats[p]
    if c == nil then
      c = redis.call('GET', ns..':pcat:'..p) or false
      cats[p] = c
    end
    return c
  end
  local defs = {} -- promotion -> its definition or false, read once per call (reset on change)
  local FIELDS = {'p', 'cat', 'goal', 'from', 'to', 'cap', 'sk', 'sv', 'sc', 'bk', 'bv', 'bc'}
  local function def(P)
    local d = defs[P]
    if d == nil then
      local v = redis.call('HMGET', ns..':promo:'..P, unpack(FIELDS))
      d = false
      if v[3] then
        d = {}
        for i, f in ipairs(FIELDS) do d[f] = v[i] end
        d.goal, d.cap = tonumber(d.goal), d.cap and tonumber(d.cap)
      end
      defs[P] = d
    end
    return d
  end
  local function in_scope(d, p)
    if d.p then return d.p == p end
    if d.cat then return category(p) == d.cat end
    return false
  end
  -- product -> the promotions scoped to it, read once per call (reset on a change of scopes);
  -- nothing is read in a shop without promotions, no category in one without category ones
  local scoped, with_cats = {}, nil -- with_cats: categories that have promotions
  local function promos_of(p)
    local list = scoped[p]
    if list then return list end
    if with_cats == nil then
      with_cats = false
      if redis.call('EXISTS', ns..':promotions') == 1 then
        with_cats = {}
        for _, c in ipairs(redis.call('SMEMBERS', ns..':promocats')) do with_cats[c] = true end
      end
    end
    list = {}
    if with_cats then
      list = redis.call('SMEMBERS', ns..':promos:'..p)
      local c = next(with_cats) and category(p)
      if c and with_cats[c] then
        for _, P in ipairs(redis.call('SMEMBERS', ns..':catpromos:'..c)) do
          table.insert(list, P)
        end
      end
    end
    scoped[p] = list
    return list
  end

  -- reward_id = 'rw-' + 24 hex of sha1(P|role|user); coupon = 'SP-' + 16 upper hex of
  -- sha1(secret|reward_id): the same reward and coupon however often and in whatever order earned
  local rids = {}
  local function reward_id(P, role, u)
    local k = P..'|'..role..'|'..u
    local r = rids[k]
    if not r then
      r = 'rw-'..sub(redis.sha1hex(k), 1, 24)
      rids[k] = r
    end
    return r
  end
  local function coupon_of(rid)
    return 'SP-'..string.upper(sub(redis.sha1hex(SECRET..'|'..rid), 1, 16))
  end
  local function holders(P, role) -- earned (not redeemed) rewards of P by role
    return ns..(role == 'sharer' and ':pe:' or ':pb:')..P
  end

  -- a status change of a reward: recorded on its hash (``seq`` counts this namespace's
  -- transitions) and, when this call writes the live namespace, appended to the outbox with the
  -- deployment-wide emission number (so an event id is never reused, even after a rebuild). An
  -- earned entry carries the reward: the definition's for the role, else the one it was last
  -- earned with (``kind``/``value``/``currency`` on the hash); a buyer's reward redeemed under a
  -- definition that has none any more, and never earned here, changes status silently.
  local function transition(rid, P, role, u, code, status, emitted, seq)
    local key = ns..':reward:'..rid
    local buyers = role == 'sharer' and (redis.call('HGET', ns..':pc:'..P, u) or '0') or '1'
    local d, k = def(P), role == 'sharer' and 's' or 'b'
    local spec
    if d and d[k..'k'] then
      spec = {d[k..'k'], d[k..'v'], d[k..'c'] or ''}
    else
      spec = redis.call('HMGET', key, 'kind', 'value', 'currency')
      if not spec[1] then spec = nil end
    end
    local silent = emitted == 'earned' and not spec
    if not silent then seq = tonumber(seq or '0') + 1 end
    redis.call('HSET', key, 'P', P, 'role', role, 'u', u, 'coupon', code, 'status', status,
      'seq', seq or 0, 'buyers', buyers)
    if emitted == 'earned' and spec then
      redis.call('HSET', key, 'kind', spec[1], 'value', spec[2], 'currency', spec[3] or '')
    end
    redis.call('SADD', ns..':rewards:'..u, rid)
    redis.call('SET', ns..':coupon:'..code, rid)
    note(u)
    if OUTBOX == '' or silent then return end
    local entry = {'XADD', OUTBOX, '*', 'type', emitted, 'reward', rid, 'P', P, 'role', role,
      'u', u, 'coupon', code, 'buyers', buyers, 'ts', string.format('%d', now),
      'seq', redis.call('HINCRBY', SEQS, rid, 1)}
    if spec then
      table.insert(entry, 'kind'); table.insert(entry, spec[1])
      table.insert(entry, 'value'); table.insert(entry, spec[2])
      if spec[3] and spec[3] ~= '' then
        table.insert(entry, 'currency'); table.insert(entry, spec[3])
      end
    end
    if emitted == 'withdrawn' then table.insert(entry, 'reason'); table.insert(entry, reason) end
    redis.call(unpack(entry))
  end
  -- u should (want) or should not hold an earned reward of P in this role; redeemed stays
  local function set_reward(P, role, u, want)
    local set = holders(P, role)
    if not want and redis.call('SISMEMBER', set, u) == 0 then return end -- nothing to withdraw
    local rid = reward_id(P, role, u)
    local st = redis.call('HMGET', ns..':reward:'..rid, 'status', 'seq')
    if st[1] == 'redeemed' or (want and st[1] == 'earned') then return end
    if want then
      transition(rid, P, role, u, coupon_of(rid), 'earned', 'earned', st[2])
      redis.call('SADD', set, u)
    else
      transition(rid, P, role, u, coupon_of(rid), 'withdrawn', 'withdrawn', st[2])
      redis.call('SREM', set, u)
    end
  end

  -- P's sharer rewards after the sharers X moved in pq:{P} (force: anything may have moved).
  -- Earned = redeemed ones (pr) and the first (cap - redeemed) qualified others by (reached,
  -- sharer); without a cap every qualified sharer. Uncapped: only X can change. Capped: a move
  -- of a sharer who holds no reward to rank cap or later changes nobody (the first cap members
  -- of pq contain the first cap - redeemed others), else the earned set is recomputed.
  local function award_sharers(P, X, force)
    local d = def(P)
    if not d then return end
    local pq, pe = ns..':pq:'..P, ns..':pe:'..P
    if not d.cap then
      for _, s in ipairs(X) do set_reward(P, 'sharer', s, redis.call('ZSCORE', pq, s) ~= false) end
      return
    end
    local K = d.cap
    if not force then
      local matters = false
      for _, s in ipairs(X) do
        local r = redis.call('ZRANK', pq, s)
        if (r and r < K) or redis.call('SISMEMBER', pe, s) == 1 then matters = true; break end
      end
      if not matters then return end
    end
    local pr = ns..':pr:'..P
    local M = K - redis.call('SCARD', pr)
    local earned, list, start = {}, {}, 0
    while #list < M and start < K do
      local page = redis.call('ZRANGE', pq, start, math.min(start + 199, K - 1))
      for _, s in ipairs(page) do
        if #list < M and redis.call('SISMEMBER', pr, s) == 0 then
          earned[s] = true; table.insert(list, s)
        end
      end
      if #page < 200 then break end
      start = start + 200
    end
    for _, s in ipairs(redis.call('SMEMBERS', pe)) do
      if not earned[s] then set_reward(P, 'sharer', s, false) end
    end
    for _, s in ipairs(list) do set_reward(P, 'sharer', s, true) end
  end

  -- a reward is redeemed (a purchase carried its coupon): pinned for ever, and a sharer's
  -- redeemed reward takes a place under the cap. Emitted as earned unless it was earned already.
  local function pin(P, role, u)
    local rid = reward_id(P, role, u)
    local key = ns..':reward:'..rid
    local st = redis.call('HMGET', key, 'status', 'seq')
    if st[1] == 'redeemed' then return end
    if st[1] == 'earned' then
      redis.call('HSET', key, 'status', 'redeemed')
      note(u)
    else
      transition(rid, P, role, u, coupon_of(rid), 'redeemed', 'earned', st[2])
    end
    redis.call('SREM', holders(P, role), u)
    if role == 'sharer' then
      redis.call('SADD', ns..':pr:'..P, u)
      award_sharers(P, {}, true)
    end
  end
  -- the code of a redeemed coupon against user u's possible rewards of promotion P
  local function match(P, u, code)
    for _, role in ipairs({'sharer', 'buyer'}) do
      if coupon_of(reward_id(P, role, u)) == code then pin(P, role, u); return true end
    end
    return false
  end

  -- s's distinct buyers in P's scope and period, and when the goal-th of them bought (credits
  -- come in time order, so a buyer's first entry is their earliest). True if pq:{P} moved.
  local function recount(P, s)
    local d = def(P)
    if not d then return false end
    local entries = redis.call('ZRANGEBYSCORE', ns..':credits:'..s, d.from, '('..d.to,
      'WITHSCORES')
    local seen, n, reached = {}, 0, nil
    for i = 1, #entries, 2 do
      local p, b = split(entries[i])
      if not seen[b] and in_scope(d, p) then
        seen[b] = true
        n = n + 1
        if n == d.goal then reached = entries[i + 1] end
      end
    end
    local pc = ns..':pc:'..P
    if n ~= tonumber(redis.call('HGET', pc, s) or '0') then
      if n > 0 then redis.call('HSET', pc, s, n) else redis.call('HDEL', pc, s) end
      note(s)
    end
    local pq = ns..':pq:'..P
    local was = redis.call('ZSCORE', pq, s)
    if reached then
      if was and tonumber(was) == tonumber(reached) then return false end
      redis.call('ZADD', pq, reached, s)
      return true
    end
    return was and redis.call('ZREM', pq, s) == 1 or false
  end
  -- b's buyer reward of P: credited for a product in scope within the period (the products
  -- of a category b may be credited for are among those b bought: counters' user:{b}:products)
  local function rebuyer(P, b)
    local d = def(P)
    if not d then return end
    local function credited(p)
      local ts = redis.call('HGET', ns..':credit:'..p..'|'..b, 'ts')
      return ts and tonumber(ts) >= tonumber(d.from) and tonumber(ts) < tonumber(d.to) or false
    end
    local want = false
    if d.bk and d.p then
      want = credited(d.p)
    elseif d.bk and d.cat then
      for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..b..':products')) do
        if category(p) == d.cat and credited(p) then want = true; break end
      end
    end
    set_reward(P, 'buyer', b, want)
  end
  local function affect(P, sharers, buyers)
    if not def(P) then return end
    local moved = {}
    for _, s in ipairs(sharers) do
      if recount(P, s) then table.insert(moved, s) end
    end
    if #moved > 0 then award_sharers(P, moved, false) end
    for _, b in ipairs(buyers) do rebuyer(P, b) end
  end
  -- everything of P from the facts: after a change of its definition or end
  local function recompute(P)
    local d = def(P)
    if not d then return end
    local sharers, buyers, seen = {}, {}, {}
    local function add(list, u, tag)
      if not seen[tag..u] then seen[tag..u] = true; table.insert(list, u) end
    end
    for _, s in ipairs(redis.call('HKEYS', ns..':pc:'..P)) do add(sharers, s, 's') end
    for _, s in ipairs(redis.call('SMEMBERS', ns..':pe:'..P)) do add(sharers, s, 's') end
    for _, b in ipairs(redis.call('SMEMBERS', ns..':pb:'..P)) do add(buyers, b, 'b') end
    local products = {}
    if d.p then products = {d.p}
    elseif d.cat then products = redis.call('SMEMBERS', ns..':catp:'..d.cat) end
    for _, p in ipairs(products) do
      for _, s in ipairs(redis.call('ZRANGE', ns..':sharers:'..p, 0, -1)) do
        add(sharers, s, 's')
      end
      if d.bk then
        for _, b in ipairs(redis.call('ZRANGEBYSCORE', ns..':via:'..p, d.from, '('..d.to)) do
          add(buyers, b, 'b')
        end
      end
    end
    for _, s in ipairs(sharers) do recount(P, s) end
    award_sharers(P, sharers, true)
    for _, b in ipairs(buyers) do rebuyer(P, b) end
  end

  -- a redemption (a purchase by u carrying coupon code): the fact keeps the smallest order id;
  -- its reward is found by the coupon, else among u's possible rewards of every promotion, else
  -- it waits (redeemwait) for its promotion's definition
  local function redeem(code, u, o)
    local key = ns..':redeemed:'..code
    local cur = redis.call('GET', key)
    if cur and cur <= o then return end
    redis.call('SET', key, o)
    if cur then return end -- handled when the first of its orders arrived
    redis.call('SADD', ns..':user:'..u..':redeemed', code)
    local rid = redis.call('GET', ns..':coupon:'..code)
    if rid then
      local r = redis.call('HMGET', ns..':reward:'..rid, 'P', 'role', 'u')
      if r[3] == u then pin(r[1], r[2], u) end -- a coupon counts only for its owner
      return
    end
    for _, P in ipairs(redis.call('SMEMBERS', ns..':promotions')) do
      if match(P, u, code) then return end
    end
    redis.call('HSET', ns..':redeemwait', code, u)
  end

  -- u's rewards, when u is erased (after referrals.lua took them out of every credit): the
  -- earned ones withdrawn (reason erased), all deleted, and their redemptions forgotten
  function engine.erase(u)
    local ukey = ns..':user:'..u
    local capped = {}
    for _, rid in ipairs(redis.call('SMEMBERS', ns..':rewards:'..u)) do
      local key = ns..':reward:'..rid
      local r = redis.call('HMGET', key, 'P', 'role', 'status', 'coupon', 'seq')
      if r[3] == 'earned' then
        transition(rid, r[1], r[2], u, r[4], 'withdrawn', 'withdrawn', r[5])
      end
      redis.call('DEL', key, ns..':coupon:'..r[4])
      redis.call('SREM', holders(r[1], r[2]), u)
      if r[2] == 'sharer' and redis.call('SREM', ns..':pr:'..r[1], u) == 1 then
        table.insert(capped, r[1])
      end
    end
    for _, P in ipairs(capped) do award_sharers(P, {}, true) end
    for _, code in ipairs(redis.call('SMEMBERS', ukey..':redeemed')) do
      redis.call('DEL', ns..':redeemed:'..code)
      redis.call('HDEL', ns..':redeemwait', code)
    end
    redis.call('DEL', ukey..':redeemed', ns..':rewards:'..u)
  end

  -- promotion defined: promotion, ts, event id, product or '', category or '', title, goal,
  -- from, ends (ms), cap (0: none), sharer kind, value, currency or '', buyer kind or '', value,
  -- currency. The newest (ts, event id) wins; the end (PromotionEnded) is kept apart from it.
  function engine.define(op)
    local P, ts, eid = op[2], op[3], op[4]
    local key = ns..':promo:'..P
    local old = redis.call('HMGET', key, 'ts', 'eid', 'p', 'cat', 'ended')
    if not newer_than(ts, eid, old) then return end
    reason, now = 'changed', ts
    local p, cat = op[5], op[6]
    if p ~= '' then cat = '' end
    if old[3] and old[3] ~= p then redis.call('SREM', ns..':promos:'..old[3], P) end
    if old[4] and old[4] ~= cat then
      redis.call('SREM', ns..':catpromos:'..old[4], P)
      if redis.call('EXISTS', ns..':catpromos:'..old[4]) == 0 then
        redis.call('SREM', ns..':promocats', old[4])
      end
    end
    if p ~= '' then redis.call('SADD', ns..':promos:'..p, P)
    elseif cat ~= '' then
      redis.call('SADD', ns..':catpromos:'..cat, P)
      redis.call('SADD', ns..':promocats', cat)
    end
    local ended = old[5] or redis.call('GET', ns..':promoend:'..P)
    local ends, to = op[10], op[10]
    if ended and tonumber(ended) < ends then to = tonumber(ended) end
    local fields = {'HSET', key, 'title', op[7], 'goal', op[8], 'from', op[9], 'ends', ends,
      'to', to, 'sk', op[12], 'sv', op[13], 'ts', ts, 'eid', eid}
    local function opt(field, value)
      if value ~= '' and value ~= 0 then
        table.insert(fields, field); table.insert(fields, value)
      end
    end
    opt('p', p); opt('cat', cat); opt('cap', op[11]); opt('sc', op[14])
    opt('bk', op[15]); opt('bv', op[15] ~= '' and op[16] or ''); opt('bc', op[17])
    if ended then opt('ended', ended) end
    redis.call('DEL', key, ns..':promoend:'..P)
    redis.call(unpack(fields))
    defs[P], scoped, with_cats = nil, {}, nil
    redis.call('SADD', ns..':promotions', P)
    if not old[1] then -- a new promotion: redemptions may have waited for it
      local waiting = redis.call('HGETALL', ns..':redeemwait')
      for i = 1, #waiting, 2 do
        if match(P, waiting[i + 1], waiting[i]) then
          redis.call('HDEL', ns..':redeemwait', waiting[i])
        end
      end
    end
    recompute(P)
  end

  -- promotion ended: promotion, ts (the earliest end counts; before the definition arrives it
  -- waits in promoend:{P})
  function engine.ended(op)
    local P, ts = op[2], op[3]
    local key = ns..':promo:'..P
    local d = redis.call('HMGET', key, 'ts', 'ended', 'ends')
    if not d[1] then
      local cur = redis.call('GET', ns..':promoend:'..P)
      if not cur or ts < tonumber(cur) then redis.call('SET', ns..':promoend:'..P, ts) end
      return
    end
    if d[2] and tonumber(d[2]) <= ts then return end
    reason, now = 'changed', ts
    redis.call('HSET', key, 'ended', ts, 'to', math.min(tonumber(d[3]), ts))
    defs[P] = nil
    recompute(P)
  end

  -- product upserted: product, category or '', ts, event id (newest wins): category scopes
  function engine.category(op)
    local p, cat, ts, eid = op[2], op[3], op[4], op[5]
    local vkey = ns..':pcatv:'..p
    if not newer_than(ts, eid, redis.call('HMGET', vkey, 'ts', 'eid')) then return end
    redis.call('HSET', vkey, 'ts', ts, 'eid', eid)
    local old = redis.call('GET', ns..':pcat:'..p) or ''
    if old == cat then return end
    reason, now = 'changed', ts
    local list = {}
    if old ~= '' then
      redis.call('SREM', ns..':catp:'..old, p)
      list = redis.call('SMEMBERS', ns..':catpromos:'..old)
    end
    if cat == '' then
      redis.call('DEL', ns..':pcat:'..p)
    else
      redis.call('SET', ns..':pcat:'..p, cat)
      redis.call('SADD', ns..':catp:'..cat, p)
      for _, P in ipairs(redis.call('SMEMBERS', ns..':catpromos:'..cat)) do
        table.insert(list, P)
      end
    end
    cats[p], scoped = cat ~= '' and cat or false, {}
    if #list == 0 then return end
    local sharers = redis.call('ZRANGE', ns..':sharers:'..p, 0, -1)
    local buyers = redis.call('ZRANGE', ns..':via:'..p, 0, -1)
    for _, P in ipairs(list) do affect(P, sharers, buyers) end
  end

  engine.promos_of, engine.affect, engine.redeem = promos_of, affect, redeem
  return engine
end
