-- The social service's rolling-hour limits per user (services/social/store.py): questions and
-- answers posted, and share links created; one script, one key per limit and user.
-- KEYS[1] the user's recent posts or links (zset: a random member each, scored by ms)
-- ARGV[1] now (ms), ARGV[2] window (ms), ARGV[3] limit, ARGV[4] the new one's member
-- Returns {1, 0} when it is taken, {0, ms} when refused: ms until the oldest one leaves
-- the window (the Retry-After).
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
