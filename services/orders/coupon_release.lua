-- Give a coupon hold back (services/orders/coupons.py, CouponHolds.release): only if the order
-- that failed to publish still holds it, never another order's hold.
-- KEYS[1] {namespace}:coupon-hold:{code}   ARGV[1] the order id
-- Returns 1 when released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
