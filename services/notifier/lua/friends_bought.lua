-- A read script of the notifier (services/notifier/proof.py: FRIENDS_LUA).
-- Runs in one shard: ARGV[1] is the shard's prefix (the namespace with one shard); KEYS[1], unused,
-- is a key of that shard, which routes the call on a Redis Cluster.
-- ARGV: ns, viewer, product, max names. Returns {count, name, name, ...}.
local ns, viewer, product, want = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {0}
-- appends first names until there are ``want``; true once there are
local function named(users)
  for _, u in ipairs(users) do
    local n = redis.call('HGET', ns..':name:'..u, 'n')
    if n then
      table.insert(out, n)
      if #out > want then return true end
    end
  end
  return false
end
if redis.call('SISMEMBER', ns..':fanout', viewer) == 1 then
  -- a viewer with many friends: the processor keeps the answer (fan-out on write), a zset of
  -- friend ids that all score 0, so it lists them in id order: the names are stable
  local fanned = ns..':fb:'..viewer..'|'..product
  out[1] = redis.call('ZCARD', fanned)
  if out[1] == 0 or want == 0 then return out end
  local from = 0
  repeat
    local page = redis.call('ZRANGE', fanned, from, from + 15)
    from = from + 16
  until named(page) or from >= out[1]
  return out
end
-- one pass: SINTER walks the smaller set and probes the other, and its result is both the
-- count and where the names come from (at most the viewer's friends, usually far fewer)
local both = redis.call('SINTER', ns..':friends:'..viewer, ns..':cbuyers:'..product)
out[1] = #both
if #both == 0 or want == 0 then return out end
-- a few: names in id order, so the answer is stable; many: the first ones found will do
if #both <= 64 then table.sort(both) end
named(both)
return out
