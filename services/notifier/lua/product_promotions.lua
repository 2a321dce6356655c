-- A read script of the notifier (services/notifier/promotions.py: PRODUCT_PROMOTIONS_LUA).
-- KEYS[1]: a key of the referrals shard (only so that a Redis Cluster client routes the call
-- there; contracts/layout.py). ARGV: that shard's prefix, product. Returns {promotion id, {field, value, ...}, ...}: every promotion scoped to
-- the product (promos:{product}) or to its category (catpromos:{pcat:{product}}) whose
-- definition is known, whatever its status (the caller keeps the active ones).
local ns, product = ARGV[1], ARGV[2]
local ids = redis.call('SMEMBERS', ns..':promos:'..product)
local category = redis.call('GET', ns..':pcat:'..product)
if category then
  for _, id in ipairs(redis.call('SMEMBERS', ns..':catpromos:'..category)) do
    table.insert(ids, id)
  end
end
local out, seen = {}, {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local def = redis.call('HGETALL', ns..':promo:'..id)
    if #def > 0 then
      table.insert(out, id); table.insert(out, def)
    end
  end
end
return out
