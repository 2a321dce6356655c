-- Badge experiments: a part of the counter store's one script. store.py puts this file before
-- counters.lua (with the constant XMAXW, the longest attribution window in ms); counters.lua builds
-- the hooks once per call (``experiment_hooks``) and calls them where it records an interaction,
-- records a purchase, keeps a purchase line or stops keeping it, and erases a user, so the
-- figures move in the same atomic call as the counters. Key layout: contracts/views.py ("Badge
-- experiments"); the rules and their cost: services/counters/store.py.
--
-- Everything here is a function of facts, recomputed where a fact changes:
--   xim:{I}|{p}, xvi, xvc, xvo, xu            impressions, clicks/dismissals, purchases with a
--                                             visitor id, a viewer's interactions (facts)
--   xa:{o}|{p} <- reattribute()/attribute()   per experiment, the latest impression of the line's
--                                             identities within its window (kept lines only)
--   xr (pur), xvl, xcv <- attribute()         what the attribution counts in
--   xr (imp, clk, dis), xvf                   moved when an interaction fact appears or goes
-- A duplicate adds no fact (xvi/xvc members are event ids), so nothing moves.
--
-- Member formats (ids never contain '|'): xim ``{E}|{V}|{visitor}|{window s}|{event id}``, xvi
-- ``{V}|{event id}``, xa values ``{V}|{visitor}``, xvl ``{order}|{product}``, xu
-- ``{kind}|{E}|{V}|{visitor}|{product}|{window s}|{event id}|{ms}`` (kind v, c or d).

local function experiment_hooks(ns, erased, hincr)
  local find, sub, fmt = string.find, string.sub, string.format
  local hooks = {}

  -- nothing here is read or written in a shop that never had an interaction (no ``experiments``
  -- key: no impression, no attribution); asked once per call
  local active_ = nil
  local function active()
    if active_ == nil then active_ = redis.call('EXISTS', ns..':experiments') == 1 end
    return active_
  end
  local listed = {}
  local function experiment(E)
    if not listed[E] then
      listed[E] = true
      redis.call('SADD', ns..':experiments', E)
      active_ = true
    end
  end
  -- users being erased by this call (counters' erase() adds them to ``erased`` after the hooks)
  local leaving = {}
  local function gone(u) return leaving[u] or erased(u) end

  local function split(s) -- the '|'-separated fields of a member
    local out, start = {}, 1
    while true do
      local bar = find(s, '|', start, true)
      if not bar then table.insert(out, sub(s, start)); return out end
      table.insert(out, sub(s, start, bar - 1))
      start = bar + 1
    end
  end
  local function int(n) return fmt('%d', n) end

  -- per experiment (only ``only`` if given), the latest impression of p by the identities u:{u}
  -- and v:{vis} whose window covers ts: E -> {ms, member, '{V}|{visitor}'}
  local function best(u, vis, p, ts, only)
    local found = {}
    local function scan(key)
      local list = redis.call('ZRANGEBYSCORE', key, ts - XMAXW, ts, 'WITHSCORES')
      for i = 1, #list, 2 do
        local m, ms = list[i], tonumber(list[i + 1])
        local f = split(m) -- E, V, visitor, window s, event id
        if (only == nil or f[1] == only) and ms + tonumber(f[4]) * 1000 >= ts then
          local b = found[f[1]]
          if not b or ms > b[1] or (ms == b[1] and m > b[2]) then
            found[f[1]] = {ms, m, f[2]..'|'..f[3]}
          end
        end
      end
    end
    if u then scan(ns..':xim:u:'..u..'|'..p) end
    if vis then scan(ns..':xim:v:'..vis..'|'..p) end
    return found
  end

  -- xcv:{E}|{V} of the visitor: their earliest line credited in (E, V), from xvl and xa
  local function reconvert(E, V, visitor)
    local want = V..'|'..visitor
    local lines = redis.call('ZRANGE', ns..':xvl:'..E..'|'..visitor, 0, -1, 'WITHSCORES')
    for i = 1, #lines, 2 do
      if redis.call('HGET', ns..':xa:'..lines[i], E) == want then
        redis.call('ZADD', ns..':xcv:'..E..'|'..V, lines[i + 1], visitor)
        return
      end
    end
    redis.call('ZREM', ns..':xcv:'..E..'|'..V, visitor)
  end
  -- xvf:{E}|{V} of the visitor: their first impression in (E, V), from xvi
  local function refirst(E, V, visitor)
    local prefix = V..'|'
    local ids = redis.call('ZRANGE', ns..':xvi:'..E..'|'..visitor, 0, -1, 'WITHSCORES')
    for i = 1, #ids, 2 do
      if sub(ids[i], 1, #prefix) == prefix then
        redis.call('ZADD', ns..':xvf:'..E..'|'..V, ids[i + 1], visitor)
        return
      end
    end
    redis.call('ZREM', ns..':xvf:'..E..'|'..V, visitor)
  end

  -- line (o, p), bought at ts, is attributed in E to ``new`` ('{V}|{visitor}', false: nowhere);
  -- ``old``: where it was (nil: read). The counts move by the difference.
  local function attribute(o, p, ts, E, new, old)
    local key = ns..':xa:'..o..'|'..p
    if old == nil then old = redis.call('HGET', key, E) end
    if new == old then return end
    local line, xr = o..'|'..p, ns..':xr:'..E
    local was = old and split(old)
    if was then
      hincr(xr, was[1]..'|'..p..'|pur', -1)
      redis.call('ZREM', ns..':xvl:'..E..'|'..was[2], line)
    end
    if new then
      local f = split(new)
      redis.call('HSET', key, E, new)
      hincr(xr, f[1]..'|'..p..'|pur', 1)
      redis.call('ZADD', ns..':xvl:'..E..'|'..f[2], ts, line)
      redis.call('ZADD', ns..':xcv:'..E..'|'..f[1], 'LT', ts, f[2])
    else
      redis.call('HDEL', key, E)
    end
    if was then reconvert(E, was[1], was[2]) end
  end

  -- the attribution of (o, p) in E from the facts: nowhere unless the line is kept by a buyer
  -- who is not erased
  local function reattribute(o, p, E)
    local f = redis.call('HMGET', ns..':order:'..o, 'user', 'ts', 'vis')
    local u, ts, new = f[1], tonumber(f[2]), false
    if u and not gone(u) and redis.call('HEXISTS', ns..':ub:'..p..'|'..u, o) == 1 then
      local b = best(u, f[3] or nil, p, ts, E)[E]
      if b then new = b[3] end
    end
    attribute(o, p, ts, E, new)
  end

  -- a purchase recorded now (its order fact has ``vis``): index it under its visitor
  function hooks.recorded(o, ts, lines, vis)
    for i = 1, #lines, 2 do redis.call('HSET', ns..':xvo:'..vis..'|'..lines[i], o, ts) end
  end

  -- line (o, p) of u's purchase (ms ts; visitor vis, false: none, nil: read it) became kept
  function hooks.kept(o, p, u, ts, vis)
    if not active() then return end
    if vis == nil then vis = redis.call('HGET', ns..':order:'..o, 'vis') end
    for E, b in pairs(best(u, vis or nil, p, ts)) do attribute(o, p, ts, E, b[3]) end
  end

  -- line (o, p) is no longer kept (refunded to zero, cancelled, its buyer erased)
  function hooks.dropped(o, p)
    if not active() then return end
    local a = redis.call('HGETALL', ns..':xa:'..o..'|'..p)
    for i = 1, #a, 2 do attribute(o, p, nil, a[i], false, a[i + 1]) end
  end

  -- I: kind (v, c, d), E, V, visitor, viewer or '', product, window s, ms, event id
  function hooks.interaction(op)
    local kind, E, V, visitor, viewer, p = op[2], op[3], op[4], op[5], op[6], op[7]
    local window, ms, eid = op[8], op[9], op[10]
    experiment(E) -- even for an erased viewer's: which experiments exist names no one
    if viewer == '' then viewer = nil end
    if viewer and erased(viewer) then return end
    local record = viewer
      and table.concat({kind, E, V, visitor, p, int(window), eid, int(ms)}, '|')
    if kind ~= 'v' then
      if redis.call('SADD', ns..':xvc:'..E..'|'..visitor, eid) == 0 then return end
      hincr(ns..':xr:'..E, V..'|'..p..(kind == 'c' and '|clk' or '|dis'), 1)
      if viewer then redis.call('SADD', ns..':xu:'..viewer, record) end
      return
    end
    -- a new member of xvi is a new impression (a duplicate is not)
    if redis.call('ZADD', ns..':xvi:'..E..'|'..visitor, ms, V..'|'..eid) == 0 then return end
    hincr(ns..':xr:'..E, V..'|'..p..'|imp', 1)
    redis.call('ZADD', ns..':xvf:'..E..'|'..V, 'LT', ms, visitor)
    local member = table.concat({E, V, visitor, int(window), eid}, '|')
    redis.call('ZADD', ns..':xim:v:'..visitor..'|'..p, ms, member)
    if viewer then
      redis.call('ZADD', ns..':xim:u:'..viewer..'|'..p, ms, member)
      redis.call('SADD', ns..':xu:'..viewer, record)
    end
    -- purchases recorded already that it may now be the latest impression of: the visitor's
    -- and the viewer's own, bought within its window
    local upto, seen = ms + window * 1000, {}
    local function candidates(list)
      for i = 1, #list, 2 do
        local o, t = list[i], tonumber(list[i + 1])
        if t >= ms and t <= upto and not seen[o] then
          seen[o] = true
          reattribute(o, p, E)
        end
      end
    end
    candidates(redis.call('HGETALL', ns..':xvo:'..visitor..'|'..p))
    if viewer then candidates(redis.call('HGETALL', ns..':ub:'..p..'|'..viewer)) end
  end

  -- before counters erase u (their orders are still in user:{u}:orders): their purchases leave
  -- every attribution and the visitor index; every interaction they made as viewer leaves every
  -- count (a visitor whose only impressions those were stops counting), and the lines that rested
  -- on their impressions are attributed again from what remains
  function hooks.erase(u)
    leaving[u] = true
    for _, o in ipairs(redis.call('SMEMBERS', ns..':user:'..u..':orders')) do
      local f = redis.call('HGETALL', ns..':order:'..o)
      local vis = nil
      for i = 1, #f, 2 do if f[i] == 'vis' then vis = f[i + 1] end end
      for i = 1, #f, 2 do
        if sub(f[i], 1, 2) == 'q:' then
          local p = sub(f[i], 3)
          if vis then redis.call('HDEL', ns..':xvo:'..vis..'|'..p, o) end
          hooks.dropped(o, p)
        end
      end
    end
    local xu = ns..':xu:'..u
    local records = redis.call('SMEMBERS', xu)
    if #records == 0 then return end
    local firsts, resting = {}, {}
    for _, r in ipairs(records) do
      local kind, E, V, visitor, p, window, eid, ms = unpack(split(r))
      if kind == 'v' then
        local member = table.concat({E, V, visitor, window, eid}, '|')
        redis.call('ZREM', ns..':xim:v:'..visitor..'|'..p, member)
        redis.call('ZREM', ns..':xim:u:'..u..'|'..p, member)
        if redis.call('ZREM', ns..':xvi:'..E..'|'..visitor, V..'|'..eid) == 1 then
          hincr(ns..':xr:'..E, V..'|'..p..'|imp', -1)
          firsts[E..'|'..V..'|'..visitor] = {E, V, visitor}
          table.insert(resting, {E, visitor, p, tonumber(ms), tonumber(window)})
        end
      elseif redis.call('SREM', ns..':xvc:'..E..'|'..visitor, eid) == 1 then
        hincr(ns..':xr:'..E, V..'|'..p..(kind == 'c' and '|clk' or '|dis'), -1)
      end
    end
    redis.call('DEL', xu)
    for _, t in pairs(firsts) do refirst(t[1], t[2], t[3]) end
    -- a line resting on a removed impression is credited to its visitor, bought within its window
    for _, r in ipairs(resting) do
      local E, visitor, p, ms = r[1], r[2], r[3], r[4]
      local lines = redis.call('ZRANGEBYSCORE', ns..':xvl:'..E..'|'..visitor, ms, ms + r[5] * 1000)
      for _, line in ipairs(lines) do
        local f = split(line)
        if f[2] == p then reattribute(f[1], p, E) end
      end
    end
  end

  return hooks
end
