-- A read script of the notifier (services/notifier/proof.py: NOTES_LUA), run in each product
-- shard (ARGV[1] is the shard's prefix; KEYS[1], unused, routes the call to its slot).
-- ARGV: prefix, viewer, limit. Returns {allowed, question id, ms, product, ...}, newest first:
-- allowed is '1' when the viewer allows question notifications and is not erased (else nothing
-- follows); product is '' for a question hidden or gone since it was noted (the reader merges
-- the shards' notes before it drops those).
local ns, viewer, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('SISMEMBER', ns..':erased', viewer) == 1
  or redis.call('HGET', ns..':consent:'..viewer, 'q') ~= '1' then
  return {'0'}
end
local page = redis.call('ZREVRANGE', ns..':notes:'..viewer, 0, limit - 1, 'WITHSCORES')
local out = {'1'}
for i = 1, #page, 2 do
  local q = redis.call('HMGET', ns..':question:'..page[i], 'p', 'hidden')
  local product = ''
  if q[1] and q[2] ~= '1' then product = q[1] end
  table.insert(out, page[i]); table.insert(out, page[i + 1]); table.insert(out, product)
end
return out
