-- A read script of the notifier (services/notifier/proof.py: TRENDING_LUA).
-- Runs in one shard: ARGV[1] is the shard's prefix (the namespace with one shard); KEYS[1], unused,
-- is a key of that shard, which routes the call on a Redis Cluster.
-- ARGV: ns, now hour, hours, limit. Returns {product, score, ...} for every product whose score
-- is at least the limit-th best (ties included, so the caller's tie-break is exact).
local ns, now_hour, hours, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local keys, weights = {}, {}
for age = 0, hours - 1 do
  table.insert(keys, ns..':trend:'..string.format('%d', now_hour - age))
  table.insert(weights, hours - age)
end
local tmp = ns..':tmp:trending'
local args = {'ZUNIONSTORE', tmp, #keys}
for _, k in ipairs(keys) do table.insert(args, k) end
table.insert(args, 'WEIGHTS')
for _, w in ipairs(weights) do table.insert(args, w) end
redis.call(unpack(args))
local edge = redis.call('ZREVRANGE', tmp, limit - 1, limit - 1, 'WITHSCORES')
local out
if #edge == 0 then
  out = redis.call('ZRANGE', tmp, 0, -1, 'WITHSCORES')
else
  out = redis.call('ZRANGEBYSCORE', tmp, edge[2], '+inf', 'WITHSCORES')
end
redis.call('DEL', tmp)
return out
