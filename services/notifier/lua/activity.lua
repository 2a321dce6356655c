-- A read script of the notifier (services/notifier/proof.py: ACTIVITY_LUA).
-- Runs in one shard: ARGV[1] is the shard's prefix (the namespace with one shard); KEYS[1], unused,
-- is a key of that shard, which routes the call on a Redis Cluster.
-- ARGV: ns, product, limit, scan limit. Returns {kind, first name, ms, ...}, newest first,
-- only users not erased who allow the feed and have a first name.
local ns, product, limit, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local default_feed = ARGV[5] == '1'  -- show_in_activity_feed of users who never chose
local key = ns..':feed:'..product
local out, found, start = {}, 0, 0
while found < limit and start < scan do
  local page = redis.call('ZREVRANGE', key, start, start + 49, 'WITHSCORES')
  if #page == 0 then break end
  for i = 1, #page, 2 do
    local member = page[i]
    local kind = string.sub(member, 1, 1)
    local rest = string.sub(member, 3)
    local bar = string.find(rest, '|', 1, true)
    local user = rest
    if bar then user = string.sub(rest, 1, bar - 1) end
    local feed = redis.call('HGET', ns..':consent:'..user, 'f')
    if redis.call('SISMEMBER', ns..':erased', user) == 0
      and (feed == '1' or (not feed and default_feed)) then
      local name = redis.call('HGET', ns..':name:'..user, 'n')
      if name then
        table.insert(out, kind); table.insert(out, name); table.insert(out, page[i + 1])
        found = found + 1
        if found >= limit then break end
      end
    end
  end
  start = start + 50
end
return out
