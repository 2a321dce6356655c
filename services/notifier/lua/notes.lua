-- A read script of the notifier (services/notifier/proof.py: NOTES_LUA).
-- ARGV: ns, viewer, limit. Returns {question id, ms, product, ...}, newest first: nothing unless
-- the viewer allows question notifications and is not erased; hidden or gone questions skipped.
local ns, viewer, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('SISMEMBER', ns..':erased', viewer) == 1
  or redis.call('HGET', ns..':consent:'..viewer, 'q') ~= '1' then
  return {}
end
local page = redis.call('ZREVRANGE', ns..':notes:'..viewer, 0, limit - 1, 'WITHSCORES')
local out = {}
for i = 1, #page, 2 do
  local q = redis.call('HMGET', ns..':question:'..page[i], 'p', 'hidden')
  if q[1] and q[2] ~= '1' then
    table.insert(out, page[i]); table.insert(out, page[i + 1]); table.insert(out, q[1])
  end
end
return out
