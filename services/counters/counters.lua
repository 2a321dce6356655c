-- The counter store's one script: applies a chunk of operations to the serving store atomically.
-- Loaded by services/counters/store.py, which prepends the constants (HOUR, W_BUY, W_REVIEW,
-- W_SHARE, FEED_KEEP, NOTES_PER_DAY, NOTES_KEEP, DAY, NOTECAP_TTL) from contracts.views,
-- promotions.lua and referrals.lua (attribution and rewards: ``referral_hooks``, called below),
-- experiments.lua (badge experiments: ``experiment_hooks``, XMAXW); the reasoning (facts,
-- idempotence, order independence, friends_bought's fan-out, verified purchases, questions and
-- their notes, referrals, experiments) is in store.py's docstring, the key layout in
-- contracts/views.py.
--
-- ARGV[1] = namespace, ARGV[2] = JSON list of operations (see store.operation),
-- ARGV[3] = default share_purchases_with_friends 0/1, ARGV[4] = fan-out threshold,
-- ARGV[5..7] = promotions.lua's (coupon secret, outbox, emission counters), ARGV[8] = notes kept per
-- user (NOTES_KEEP; more in a shard of a sharded layout: store.py says why).
-- Returns, as JSON, [product ids whose public views changed, users whose notes changed].

local ns = ARGV[1]
local ops = cjson.decode(ARGV[2])
-- share_purchases_with_friends of users who never chose (the shop's default, normally off)
local DEFAULT_SHARE = ARGV[3] == '1'
-- friendships on record from which a viewer's friends_bought is fanned out on write (0: never)
local FANOUT_AT = tonumber(ARGV[4]) or 0
local changed, changed_list = {}, {}
local noted, noted_list = {}, {} -- users whose question notes changed
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
    elseif kind == 'R' or kind == 'V' or kind == 'Q' then want(op[4])
    elseif kind == 'A' or kind == 'H' then want(op[5])
    elseif kind == 'F' then want(op[3]); want(op[4])
    elseif kind == 'X' or kind == 'N' or kind == 'E' then want(op[2])
    elseif kind == 'I' and op[6] ~= '' then want(op[6]) end -- K, M name no user, I a viewer
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
-- badge experiments (experiments.lua): told where a purchase is recorded, a line becomes kept or
-- not, an interaction arrives and a user is erased
local xp = experiment_hooks(ns, erased, hincr)
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
local function is_buyer(p, u) return redis.call('EXISTS', ns..':ub:'..p..'|'..u) == 1 end
-- the earliest of the user's kept orders of a product (event ms), nil without one
local function first_kept(p, u)
  local first = nil
  for _, t in ipairs(redis.call('HVALS', ns..':ub:'..p..'|'..u)) do
    local v = tonumber(t)
    if first == nil or v < first then first = v end
  end
  return first
end

-- Question notes (store.py's docstring): u is notified of a visible question about p asked by
-- someone else at ts iff u is in qnotify:{p} (a kept buyer of p who allows the notes) with a
-- kept purchase at or before ts: then the question is a *candidate* of u, a member of
-- notecap:{u}:{day} (scored by ts); the first NOTES_PER_DAY candidates of a day (by ts, then id)
-- are notified, and notes:{u} holds the newest NOTES_KEEP notified. Every change of a candidate
-- goes through cand(), which keeps both in step, so the notes depend on the facts only.
local function ymd(day) -- days since 1970-01-01 -> 'YYYYMMDD' (UTC; the civil calendar)
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d%02d%02d', y, m, d)
end
local function capkey(u, ts) return ns..':notecap:'..u..':'..ymd(math.floor(ts / DAY)) end
local function note_changed(u)
  if not noted[u] then noted[u] = true; table.insert(noted_list, u) end
end
local function note_add(u, qid, ts)
  local key = ns..':notes:'..u
  if redis.call('ZADD', key, ts, qid) == 1 then
    if redis.call('ZCARD', key) > NOTES_KEEP then
      redis.call('ZREMRANGEBYRANK', key, 0, -(NOTES_KEEP + 1))
    end
    note_changed(u)
  end
end
-- a note left a full notes:{u}: bring back the newest notified question older than every note
local function restore(u)
  local key = ns..':notes:'..u
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if not oldest[1] then return end
  local ots = tonumber(oldest[2])
  local cap = capkey(u, ots)
  local r = redis.call('ZRANK', cap, oldest[1])
  if r and r > 0 then -- the candidate before it on its day is notified too
    local prev = redis.call('ZRANGE', cap, r - 1, r - 1, 'WITHSCORES')
    note_add(u, prev[1], tonumber(prev[2]))
    return
  end
  -- else the last notified question of the latest earlier day with candidates: the newest
  -- candidate before that day is found among the questions of the products u is notified of
  local before = '('..string.format('%d', math.floor(ots / DAY) * DAY)
  local best = nil
  for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..u..':products')) do
    local first = redis.call('ZSCORE', ns..':qnotify:'..p, u)
    local offset = first and 0
    while offset do
      local qs = redis.call('ZREVRANGEBYSCORE', ns..':questions:'..p, before, first,
        'WITHSCORES', 'LIMIT', offset, 10)
      offset = #qs == 20 and offset + 10 or nil
      for i = 1, #qs, 2 do
        if redis.call('HGET', ns..':question:'..qs[i], 'u') ~= u then
          local ts = tonumber(qs[i + 1])
          if best == nil or ts > best then best = ts end
          offset = nil
          break
        end
      end
    end
  end
  if best then
    local top = redis.call('ZRANGE', capkey(u, best), 0, NOTES_PER_DAY - 1, 'WITHSCORES')
    if #top > 0 then note_add(u, top[#top - 1], tonumber(top[#top])) end
  end
end
local function note_remove(u, qid)
  local key = ns..':notes:'..u
  if redis.call('ZREM', key, qid) == 1 then
    note_changed(u)
    if redis.call('ZCARD', key) == NOTES_KEEP - 1 then restore(u) end
  end
end
-- qid (asked at ts) became (on) or stopped being a candidate of u
local function cand(u, qid, ts, on)
  local key = capkey(u, ts)
  if on then
    if redis.call('ZADD', key, ts, qid) == 0 then return end -- a candidate already (a redelivery)
    redis.call('EXPIRE', key, NOTECAP_TTL)
    if redis.call('ZRANK', key, qid) < NOTES_PER_DAY then
      -- it takes the day's last notified place from whoever held it
      local pushed = redis.call('ZRANGE', key, NOTES_PER_DAY, NOTES_PER_DAY)
      if pushed[1] then note_remove(u, pushed[1]) end
      note_add(u, qid, ts)
    end
  else
    local r = redis.call('ZRANK', key, qid)
    if r then
      redis.call('ZREM', key, qid)
      note_remove(u, qid)
      if r < NOTES_PER_DAY then -- the day's next candidate moves up into the notified places
        local up = redis.call('ZRANGE', key, NOTES_PER_DAY - 1, NOTES_PER_DAY - 1, 'WITHSCORES')
        if up[1] then note_add(u, up[1], tonumber(up[2])) end
      end
      redis.call('EXPIRE', key, NOTECAP_TTL)
    else
      note_remove(u, qid) -- a day set past its TTL: the note goes all the same
    end
  end
end
-- the visible questions about p asked from ``from`` (ms) up to ``to`` (excluded; nil: no end),
-- but for u's own, became (on) or stopped being candidates of u
local function shift(u, p, from, to, on)
  local upto = to and ('('..string.format('%d', to)) or '+inf'
  local qs = redis.call('ZRANGEBYSCORE', ns..':questions:'..p, from, upto, 'WITHSCORES')
  for i = 1, #qs, 2 do
    if redis.call('HGET', ns..':question:'..qs[i], 'u') ~= u then
      cand(u, qs[i], tonumber(qs[i + 1]), on)
    end
  end
end
-- u's earliest kept purchase of p is now ``first`` (ms; nil: none kept): qnotify:{p} and u's
-- candidates follow. ``wants``: u allows question notes (the caller read consent ``q``); a user
-- not in qnotify:{p} joins only then.
local function notify_from(p, u, first, wants)
  local key = ns..':qnotify:'..p
  local score = redis.call('ZSCORE', key, u)
  local old = score and tonumber(score) or nil
  if old == first or (old == nil and not wants) then return end
  if first == nil then redis.call('ZREM', key, u) else redis.call('ZADD', key, first, u) end
  if old == nil then shift(u, p, first, nil, true)
  elseif first == nil then shift(u, p, old, nil, false)
  elseif first < old then shift(u, p, first, old, true)
  else shift(u, p, old, first, false) end
end

-- A question's contribution to qa:{p}, recomputed from its facts and recorded in its ``c`` (bits:
-- 1 visible, 2 with a visible answer, 4 with one by a verified buyer): every fact that can change
-- it calls requalify(), which moves the counts by the difference, so they are exact in any order.
local QA_COUNTS = {{1, 'questions'}, {2, 'answered'}, {4, 'answered_by_buyers'}}
local function requalify(qid)
  local qkey = ns..':question:'..qid
  local q = redis.call('HMGET', qkey, 'p', 'u', 'ts', 'hidden', 'c')
  local was, now = tonumber(q[5] or '0'), 0
  if q[2] and q[4] ~= '1' then
    now = 1
    if redis.call('SCARD', ns..':qans:'..qid) > 0 then now = now + 2 end
    if redis.call('SCARD', ns..':qbuyans:'..qid) > 0 then now = now + 4 end
  end
  if now == was then return end
  local p, ts = q[1], tonumber(q[3])
  for _, count in ipairs(QA_COUNTS) do
    local bit_ = count[1]
    local delta = (bit.band(now, bit_) ~= 0 and 1 or 0) - (bit.band(was, bit_) ~= 0 and 1 or 0)
    if delta ~= 0 then hincr(ns..':qa:'..p, count[2], delta) end
  end
  if now == 0 then redis.call('HDEL', qkey, 'c') else redis.call('HSET', qkey, 'c', now) end
  if now % 2 ~= was % 2 then -- shown or hidden: the list, and the notes of those notified of it
    local shown = now % 2 == 1
    if shown then
      redis.call('ZADD', ns..':questions:'..p, ts, qid)
    else
      redis.call('ZREM', ns..':questions:'..p, qid)
    end
    for _, r in ipairs(redis.call('ZRANGEBYSCORE', ns..':qnotify:'..p, '-inf', ts)) do
      if r ~= q[2] then cand(r, qid, ts, shown) end
    end
  end
  mark(p)
end
-- an answer's place in qans:{q} (shown: posted, author not erased, not hidden) and qbuyans:{q}
-- (shown, and its author a verified buyer of the product now), from its facts
local function reanswer(aid)
  local a = redis.call('HMGET', ns..':answer:'..aid, 'q', 'p', 'u', 'hidden')
  local qid, p, u = a[1], a[2], a[3]
  if not qid then return end -- not posted (or its author erased): in no set
  local shown = u and a[4] ~= '1'
  local by_buyer = shown and is_buyer(p, u)
  local moved = redis.call(shown and 'SADD' or 'SREM', ns..':qans:'..qid, aid)
    + redis.call(by_buyer and 'SADD' or 'SREM', ns..':qbuyans:'..qid, aid)
  if moved > 0 then requalify(qid); mark(p) end
end

local function verified_effect(p, rating, sign)
  local key = ns..':reviews:'..p
  hincr(key, 'vcount', sign)
  hincr(key, 'vsum', sign * rating)
  hincr(key, 'vh'..rating, sign)
end
-- u became (buyer) or stopped being a verified buyer of p (``ub:{p}|{u}`` appeared or went):
-- their live review moves between the verified and the unverified figures (``vf`` says where it
-- is counted, so taking it out subtracts exactly what was added), their answers in and out of
-- qbuyans
local function standing(p, u, buyer)
  local rkey = ns..':review:'..p..'|'..u
  local r = redis.call('HMGET', rkey, 'live', 'rating', 'vf')
  if r[1] == '1' and (r[3] == '1') ~= buyer then
    redis.call('HSET', rkey, 'vf', buyer and 1 or 0)
    verified_effect(p, tonumber(r[2]), buyer and 1 or -1)
    mark(p)
  end
  for _, aid in ipairs(redis.call('SMEMBERS', ns..':user:'..u..':answers')) do
    if redis.call('HGET', ns..':answer:'..aid, 'p') == p then reanswer(aid) end
  end
end

-- a kept purchase becomes visible: buyer windows, friends' counts, trend, feed, standing, notes
local function add_buyer(o, p, u, ts)
  redis.call('HSET', ns..':ub:'..p..'|'..u, o, ts)
  trend(ts, p, W_BUY)
  feed_add(p, ts, 'b|'..u..'|'..o)
  -- the buyer's score is their latest kept purchase: GT keeps a later one already there
  local new = redis.call('ZADD', ns..':buyers:'..p, 'GT', ts, u) == 1
  -- consent: share purchases with friends (absent: the shop's default), question notes
  local c = redis.call('HMGET', ns..':consent:'..u, 's', 'q')
  if c[1] == '1' or (not c[1] and DEFAULT_SHARE) then cbuyer(p, u, true) end
  if c[2] == '1' then notify_from(p, u, new and ts or first_kept(p, u), true) end
  if new then standing(p, u, true) end
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
  if now then add_buyer(o, p, u, ts); xp.kept(o, p, u, ts); return end
  redis.call('HDEL', ub, o)
  xp.dropped(o, p)
  trend(ts, p, -W_BUY)
  feed_remove(p, 'b|'..u..'|'..o)
  local best, first = nil, nil
  for _, t in ipairs(redis.call('HVALS', ub)) do
    local v = tonumber(t)
    if best == nil or v > best then best = v end
    if first == nil or v < first then first = v end
  end
  if best ~= nil then
    redis.call('ZADD', ns..':buyers:'..p, best, u)
  else
    redis.call('ZREM', ns..':buyers:'..p, u)
    cbuyer(p, u, false)
  end
  notify_from(p, u, first, false)
  if best == nil then standing(p, u, false) end
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

-- a review's contribution to the product's summary, trend and feed (+1 adds, -1 removes); a
-- verified one (``vf``) counts in the verified figures too
local function review_effect(p, u, rating, ts, sign, verified)
  local key = ns..':reviews:'..p
  hincr(key, 'count', sign)
  hincr(key, 'sum', sign * rating)
  hincr(key, 'h'..rating, sign)
  if verified then verified_effect(p, rating, sign) end
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
    -- their question notes of p go below: here, the day sets of their candidates
    local first = redis.call('ZSCORE', ns..':qnotify:'..p, u)
    if first then
      redis.call('ZREM', ns..':qnotify:'..p, u)
      local days = {}
      local qs = redis.call('ZRANGEBYSCORE', ns..':questions:'..p, first, '+inf', 'WITHSCORES')
      for i = 2, #qs, 2 do days[capkey(u, tonumber(qs[i]))] = true end
      for key in pairs(days) do redis.call('DEL', key) end
    end
  end
  for _, o in ipairs(redis.call('SMEMBERS', ukey..':orders')) do
    redis.call('DEL', ns..':order:'..o)
  end
  for _, line in ipairs(redis.call('SMEMBERS', ukey..':refunds')) do
    redis.call('DEL', ns..':refund:'..line)
  end
  for _, p in ipairs(redis.call('SMEMBERS', ukey..':reviews')) do
    local rkey = ns..':review:'..p..'|'..u
    local r = redis.call('HMGET', rkey, 'live', 'rating', 'ts', 'vf')
    if r[1] == '1' then review_effect(p, u, tonumber(r[2]), tonumber(r[3]), -1, r[4] == '1') end
    redis.call('DEL', rkey)
    redis.call('SREM', ns..':reviewers:'..p, u)
  end
  for _, sid in ipairs(redis.call('SMEMBERS', ukey..':shares')) do
    local skey = ns..':share:'..sid
    local s = redis.call('HMGET', skey, 'p', 'ch', 'ts')
    if s[1] then share_effect(sid, s[1], u, s[2], tonumber(s[3]), -1) end
    redis.call('DEL', skey)
  end
  -- their questions and answers leave every count, list and note; what stays of them is the
  -- shop's moderation, acceptance and other users' votes, which name no one
  for _, qid in ipairs(redis.call('SMEMBERS', ukey..':questions')) do
    local qkey = ns..':question:'..qid
    redis.call('HDEL', qkey, 'u')
    requalify(qid)
    redis.call('HDEL', qkey, 'p', 'ts', 'eid')
  end
  for _, aid in ipairs(redis.call('SMEMBERS', ukey..':answers')) do
    local akey = ns..':answer:'..aid
    redis.call('HDEL', akey, 'u')
    reanswer(aid)
    redis.call('HDEL', akey, 'q', 'p', 'ts', 'eid')
  end
  for _, aid in ipairs(redis.call('SMEMBERS', ukey..':votes')) do
    local vkey = ns..':vote:'..aid..'|'..u
    if redis.call('HGET', vkey, 'h') == '1' then
      hincr(ns..':answer:'..aid, 'helpful', -1)
      local p = redis.call('HGET', ns..':answer:'..aid, 'p')
      if p then mark(p) end
    end
    redis.call('DEL', vkey)
  end
  for _, f in ipairs(redis.call('SMEMBERS', ukey..':fr')) do
    redis.call('SREM', ns..':friends:'..f, u)
    redis.call('SREM', ns..':user:'..f..':fr', u)
    local a, b = u, f
    if b < a then a, b = f, u end
    redis.call('DEL', ns..':fr:'..a..'|'..b)
    refanout(f) -- one friendship fewer on record
  end
  redis.call('DEL', ns..':friends:'..u, ns..':consent:'..u, ns..':name:'..u, ns..':notes:'..u,
    ukey..':products', ukey..':orders', ukey..':refunds', ukey..':reviews', ukey..':shares', ukey..':fr',
    ukey..':fo', ukey..':questions', ukey..':answers', ukey..':votes')
end

-- referral attribution and rewards (referrals.lua), called after this script recorded its facts
local ref = referral_hooks(ns, erased, mark, note_changed, newer_than)

for _, op in ipairs(ops) do
  local kind = op[1]
  if kind == 'P' then -- purchase: order, user, ts, {product, qty, ...}, event id[, link, coupon
    -- [, visitor]]
    local o, u, ts, lines, eid, vis = op[2], op[3], op[4], op[5], op[6], op[9] or false
    local order = ns..':order:'..o
    -- a recorded purchase (a duplicate, a redelivery) has nothing left to change
    local prev = not erased(u) and redis.call('HMGET', order, 'user', 'cancelled', 'refunded')
    local kept_lines = nil -- products of the order kept now, when recorded by this call
    if prev and not prev[1] then
      kept_lines = {}
      local fields = {'HSET', order, 'user', u, 'ts', ts}
      if eid then table.insert(fields, 'eid'); table.insert(fields, eid) end
      if vis then table.insert(fields, 'vis'); table.insert(fields, vis) end
      local products = {'SADD', ns..':user:'..u..':products'}
      for i = 1, #lines, 2 do
        table.insert(fields, 'q:'..lines[i]); table.insert(fields, lines[i + 1])
        table.insert(products, lines[i])
      end
      redis.call(unpack(fields))
      redis.call(unpack(products))
      redis.call('SADD', ns..':user:'..u..':orders', o)
      if vis then xp.recorded(o, ts, lines, vis) end
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
          if kept > 0 then
            add_buyer(o, p, u, ts)
            kept_lines[p] = true
            xp.kept(o, p, u, ts, vis)
          end
        end
      end
    end
    if op[7] and (op[7] ~= '' or op[8] ~= '') then
      ref.purchase(o, u, ts, eid, lines, op[7], op[8], kept_lines)
    end
  elseif kind == 'R' then -- refund: order, refund id, user, {product, qty, ...}, ts
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
      ref.order(o, op[6])
    end
  elseif kind == 'C' then -- cancellation: order, user, ts (a full refund of every line)
    local o, u = op[2], op[3]
    if not erased(u) then
      redis.call('SADD', ns..':user:'..u..':orders', o)
      redis.call('HSET', ns..':order:'..o, 'cancelled', '1')
      recompute_order(o)
      ref.order(o, op[4])
    end
  elseif kind == 'V' then -- review: live 0/1, product, user, rating, ts, event id
    local live, p, u, rating, ts, eid = op[2], op[3], op[4], op[5], op[6], op[7]
    local rkey = ns..':review:'..p..'|'..u
    local old = not erased(u) and redis.call('HMGET', rkey, 'ts', 'eid', 'live', 'rating', 'vf')
    if old and newer_than(ts, eid, old) then
      if old[3] == '1' then
        review_effect(p, u, tonumber(old[4]), tonumber(old[1]), -1, old[5] == '1')
      end
      -- verified: the author has a kept purchase of the product now (standing() keeps it so)
      local verified = live == 1 and is_buyer(p, u)
      redis.call('HSET', rkey, 'live', live, 'rating', rating, 'ts', ts, 'eid', eid,
        'vf', verified and 1 or 0)
      if live == 1 then review_effect(p, u, rating, ts, 1, verified) end
      redis.call('SADD', ns..':user:'..u..':reviews', p)
      redis.call('SADD', ns..':reviewers:'..p, u)
      mark(p)
    end
  elseif kind == 'S' then -- share: share id, user, product, channel, ts, event id, link token
    local sid, u, p, ch, ts, eid = op[2], op[3], op[4], op[5], op[6], op[7]
    local skey = ns..':share:'..sid
    local fields = {'HSET', skey, 'p', p, 'u', u, 'ch', ch, 'ts', ts}
    if eid then table.insert(fields, 'eid'); table.insert(fields, eid) end
    if op[8] then table.insert(fields, 'lk'); table.insert(fields, op[8]) end -- its link
    -- HSET answers how many fields were new: none for a share already recorded (a duplicate)
    if not erased(u) and redis.call(unpack(fields)) > 0 then
      redis.call('SADD', ns..':user:'..u..':shares', sid)
      share_effect(sid, p, u, ch, ts, 1)
      mark(p)
    end
    if op[8] then ref.share(op[8], sid, u, p, ts) end
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
  elseif kind == 'X' then -- privacy: user, share purchases 0/1, feed 0/1, ts, event id, notes 0/1
    local u, s, f, ts, eid, q = op[2], op[3], op[4], op[5], op[6], op[7] or 0
    local ckey = ns..':consent:'..u
    local old = not erased(u) and redis.call('HMGET', ckey, 'ts', 'eid', 'q')
    if old and newer_than(ts, eid, old) then
      redis.call('HSET', ckey, 's', s, 'f', f, 'q', q, 'ts', ts, 'eid', eid)
      local notes_flip = (old[3] == '1') ~= (q == 1)
      for _, p in ipairs(redis.call('SMEMBERS', ns..':user:'..u..':products')) do
        local buyer = redis.call('ZSCORE', ns..':buyers:'..p, u) ~= false
        cbuyer(p, u, s == 1 and buyer)
        if notes_flip and buyer then
          if q == 1 then notify_from(p, u, first_kept(p, u), true)
          else notify_from(p, u, nil, false) end
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
  elseif kind == 'E' then -- erasure: user, ts
    if not erased(op[2]) then ref.erase(op[2], op[3]); xp.erase(op[2]); erase(op[2]) end
  elseif kind == 'Q' then -- question asked: question id, product, asker, ts, event id
    local qid, p, u, ts, eid = op[2], op[3], op[4], op[5], op[6]
    local qkey = ns..':question:'..qid
    -- recorded once: a duplicate finds its asker there already
    if not erased(u) and redis.call('HSETNX', qkey, 'u', u) == 1 then
      redis.call('HSET', qkey, 'p', p, 'ts', ts, 'eid', eid)
      redis.call('SADD', ns..':user:'..u..':questions', qid)
      requalify(qid)
    end
  elseif kind == 'A' then -- answer posted: answer id, question id, product, author, ts, event id
    local aid, qid, p, u, ts, eid = op[2], op[3], op[4], op[5], op[6], op[7]
    local akey = ns..':answer:'..aid
    if not erased(u) and redis.call('HSETNX', akey, 'u', u) == 1 then
      redis.call('HSET', akey, 'q', qid, 'p', p, 'ts', ts, 'eid', eid)
      redis.call('SADD', ns..':user:'..u..':answers', aid)
      reanswer(aid)
    end
  elseif kind == 'H' then -- helpful vote: answer id, question id, product, voter, 0/1, ts, eid
    local aid, p, u, h, ts, eid = op[2], op[4], op[5], op[6], op[7], op[8]
    local vkey = ns..':vote:'..aid..'|'..u
    local old = not erased(u) and redis.call('HMGET', vkey, 'ts', 'eid', 'h')
    if old and newer_than(ts, eid, old) then
      redis.call('HSET', vkey, 'h', h, 'ts', ts, 'eid', eid)
      redis.call('SADD', ns..':user:'..u..':votes', aid)
      local delta = h - tonumber(old[3] or '0')
      if delta ~= 0 then hincr(ns..':answer:'..aid, 'helpful', delta); mark(p) end
    end
  elseif kind == 'K' then -- answer accepted: answer id, question id, product (a flag that stays)
    if redis.call('HSET', ns..':answer:'..op[2], 'accepted', 1) == 1 then mark(op[4]) end
  elseif kind == 'M' then -- moderation: 'q'|'a', target id, question id, product, hidden, ts, eid
    local target, tid, p, hidden, ts, eid = op[2], op[3], op[5], op[6], op[7], op[8]
    local key = ns..(target == 'q' and ':question:' or ':answer:')..tid
    if newer_than(ts, eid, redis.call('HMGET', key, 'hts', 'heid')) then
      redis.call('HSET', key, 'hidden', hidden, 'hts', ts, 'heid', eid)
      if target == 'q' then requalify(tid) else reanswer(tid) end
      mark(p)
    end
  elseif kind == 'D' then ref.define(op) -- promotion defined (referrals.lua says the fields)
  elseif kind == 'T' then ref.ended(op) -- promotion ended: promotion, ts, event id
  elseif kind == 'U' then ref.category(op) -- product upserted: product, category, ts, event id
  elseif kind == 'I' then xp.interaction(op) -- badge interaction (experiments.lua's fields)
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
local users = {}
for _, u in ipairs(noted_list) do
  if not erased_users[u] then table.insert(users, u) end -- erased users are told nothing
end
local function json_list(list) return #list == 0 and '[]' or cjson.encode(list) end
return '['..json_list(changed_list)..','..json_list(users)..']'
