-- A read script of the notifier (services/notifier/promotions.py: PROGRESS_LUA).
-- KEYS[1]: a key of the referrals shard (routing on a Redis Cluster; contracts/layout.py: the
-- promotion's keys are there and user facts are replicated into every shard, so this read touches
-- that shard's prefix only). ARGV: that shard's prefix, promotion, user, max names, credits
-- scanned at most, default share consent (0/1).
-- Returns {} for an unknown promotion, else
-- {promotion hash as {field, value, ...}, buyers, {reward id, role, coupon, status, ...},
--  {first name, ...}}:
-- buyers is the user's progress (pc:{promotion}); the rewards are the user's in this promotion;
-- the names are those of buyers credited to the user in the promotion's scope and period who
-- are the user's friends, share purchases with friends, are not erased and have a first name
-- (oldest credit first, each buyer once).
local ns, promo, user = ARGV[1], ARGV[2], ARGV[3]
local want, scan, default_share = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local def = redis.call('HGETALL', ns..':promo:'..promo)
if #def == 0 then return {} end
local fields = {}
for i = 1, #def, 2 do fields[def[i]] = def[i + 1] end
local buyers = tonumber(redis.call('HGET', ns..':pc:'..promo, user) or '0')

local rewards = {}
for _, id in ipairs(redis.call('SMEMBERS', ns..':rewards:'..user)) do
  local r = redis.call('HMGET', ns..':reward:'..id, 'P', 'role', 'coupon', 'status')
  if r[1] == promo then
    table.insert(rewards, id); table.insert(rewards, r[2] or '')
    table.insert(rewards, r[3] or ''); table.insert(rewards, r[4] or '')
  end
end

local names = {}
if want > 0 and buyers > 0 and fields['from'] and fields['to'] then
  local friends = ns..':friends:'..user
  local credits = redis.call('ZRANGEBYSCORE', ns..':credits:'..user, fields['from'],
    '('..fields['to'], 'LIMIT', 0, scan)
  local seen, categories = {}, {}
  for _, member in ipairs(credits) do
    local bar = string.find(member, '|', 1, true)
    if bar then
      local product, buyer = string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
      local in_scope
      if fields['p'] then
        in_scope = product == fields['p']
      elseif fields['cat'] then
        if categories[product] == nil then
          categories[product] = redis.call('GET', ns..':pcat:'..product) or false
        end
        in_scope = categories[product] == fields['cat']
      end
      if in_scope and not seen[buyer] then
        seen[buyer] = true
        local share = redis.call('HGET', ns..':consent:'..buyer, 's')
        if redis.call('SISMEMBER', friends, buyer) == 1
          and (share == '1' or (not share and default_share))
          and redis.call('SISMEMBER', ns..':erased', buyer) == 0 then
          local name = redis.call('HGET', ns..':name:'..buyer, 'n')
          if name then
            table.insert(names, name)
            if #names >= want then break end
          end
        end
      end
    end
  end
end
return {def, buyers, rewards, names}
