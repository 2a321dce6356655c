-- A read script of the notifier (services/notifier/experiment_results.py: FIGURES_LUA): one
-- product shard's figures of a badge experiment, read atomically (the processor changes a shard's
-- xr, xvf and xcv in one script, so a purchase in xr comes with its converted visitor in xcv).
-- KEYS[1]: the shard's xr:{E} (only so that a Redis Cluster client routes the call to the shard;
-- contracts/layout.py). ARGV: the shard's prefix, E, then the variant names.
-- Returns {xr:{E} as {field, value, ...}, then per variant xvf:{E}|{V} and xcv:{E}|{V} as
-- {visitor, first ms, ...}}: the caller merges the shards (sums, and the union by first time).
local ns, e = ARGV[1], ARGV[2]
local out = {redis.call('HGETALL', ns..':xr:'..e)}
for i = 3, #ARGV do
  table.insert(out, redis.call('ZRANGE', ns..':xvf:'..e..'|'..ARGV[i], 0, -1, 'WITHSCORES'))
  table.insert(out, redis.call('ZRANGE', ns..':xcv:'..e..'|'..ARGV[i], 0, -1, 'WITHSCORES'))
end
return out
