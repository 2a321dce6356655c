"""Applies decoded events to the Redis serving store, idempotently and order-independently.

Why this is effectively-once without Kafka transactions: every event is recorded as a *fact*
(``HSET`` of a field that the event alone determines: an order's lines, a refund's quantity keyed
by its refund id) and every view is *recomputed* from the facts inside one atomic Lua script.
Recording a fact twice is a no-op, and recomputing twice gives the same view, so duplicates,
redeliveries after a crash and full replays never change a counter. Facts commute, so a refund
that arrives before its purchase converges to the same state (the refund waits as a fact; the
purchase's recompute subtracts it). Two workers may run scripts on the same keys concurrently:
each script is atomic and the last one sees every fact, so they converge too.

A batch of events becomes one pipelined round trip of script calls, then one coalesced
announcement of the products whose views changed. The key layout is :mod:`contracts.views`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import orjson
import redis.asyncio as aioredis

from contracts import events as ev
from contracts.views import Keys

# Recomputes one user's standing as a buyer of one product from the recorded facts:
# kept quantity of this order line = bought - sum(refunds); the buyers zset holds the user with
# the time of their latest kept purchase, or not at all. Returns 1 when the zset changed.
_RECOMPUTE = """
local function recompute(ns, order_id, product, user, ts)
  local bought = tonumber(redis.call('HGET', ns..':order:'..order_id, 'q:'..product) or '0')
  local refunded = 0
  for _, q in ipairs(redis.call('HVALS', ns..':refund:'..order_id..':'..product)) do
    refunded = refunded + tonumber(q)
  end
  local ub = ns..':ub:'..product..':'..user
  if bought - refunded > 0 then
    redis.call('HSET', ub, order_id, ts)
  else
    redis.call('HDEL', ub, order_id)
  end
  local best = nil
  for _, t in ipairs(redis.call('HVALS', ub)) do
    local v = tonumber(t)
    if best == nil or v > best then best = v end
  end
  local buyers = ns..':buyers:'..product
  local score = redis.call('ZSCORE', buyers, user)
  local before = nil
  if score then before = tonumber(score) end
  if best ~= nil then
    redis.call('ZADD', buyers, best, user)
  else
    redis.call('ZREM', buyers, user)
  end
  if before == best then return 0 end
  return 1
end
"""

# KEYS: none (single Redis primary; keys are derived from the namespace)
# ARGV: ns, order_id, user_id, ts_ms, product_1, qty_1, product_2, qty_2, …
PURCHASE_LUA = (
    _RECOMPUTE
    + """
local ns, order_id, user, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('SISMEMBER', ns..':erased', user) == 1 then return {} end
local order = ns..':order:'..order_id
redis.call('HSET', order, 'user', user, 'ts', ts)
local changed = {}
for i = 5, #ARGV, 2 do
  local product = ARGV[i]
  redis.call('HSET', order, 'q:'..product, ARGV[i + 1])
  redis.call('SADD', ns..':user:'..user..':products', product)
  if recompute(ns, order_id, product, user, ts) == 1 then table.insert(changed, product) end
end
return changed
"""
)

# ARGV: ns, order_id, refund_id, user_id, product_1, qty_1, …
REFUND_LUA = (
    _RECOMPUTE
    + """
local ns, order_id, refund_id, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('SISMEMBER', ns..':erased', user) == 1 then return {} end
local order = ns..':order:'..order_id
local owner = redis.call('HGET', order, 'user')
local ts = redis.call('HGET', order, 'ts')
local changed = {}
for i = 5, #ARGV, 2 do
  local product = ARGV[i]
  redis.call('HSET', ns..':refund:'..order_id..':'..product, refund_id, ARGV[i + 1])
  -- The purchase may not have arrived yet; its own recompute will apply this refund.
  if owner and recompute(ns, order_id, product, owner, ts) == 1 then
    table.insert(changed, product)
  end
end
return changed
"""
)


def _merge_lines(lines: Iterable[ev.OrderLine | ev.RefundLine]) -> list[str]:
    """Flatten lines into product, quantity pairs, summing a product listed twice."""
    quantities: dict[str, int] = defaultdict(int)
    for line in lines:
        quantities[line.product_id] += line.quantity
    flat: list[str] = []
    for product, qty in quantities.items():
        flat += [product, str(qty)]
    return flat


def event_ms(event: ev.Event) -> int:
    return int(event.occurred_at.timestamp() * 1000)


class CounterStore:
    """Writes events into the serving store; one instance per worker process."""

    def __init__(self, redis: aioredis.Redis, namespace: str) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        self._purchase = redis.register_script(PURCHASE_LUA)
        self._refund = redis.register_script(REFUND_LUA)

    async def apply(self, events: list[ev.Event]) -> set[str]:
        """Apply a batch in one pipelined round trip; returns the products whose views changed."""
        if not events:
            return set()
        ns = self.keys.ns
        calls = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                if isinstance(event, ev.PurchaseCompleted):
                    p = event.payload
                    args = [ns, p.order_id, p.user_id, str(event_ms(event)), *_merge_lines(p.lines)]
                    await self._purchase(args=args, client=pipe)
                    calls += 1
                elif isinstance(event, ev.OrderRefunded):
                    p = event.payload
                    args = [ns, p.order_id, p.refund_id, p.user_id, *_merge_lines(p.lines)]
                    await self._refund(args=args, client=pipe)
                    calls += 1
                # Other event types reach the store as their counters are built.
            results = await pipe.execute() if calls else []
        changed: set[str] = set()
        for result in results:
            changed.update(result)
        return changed

    async def announce(self, products: set[str]) -> None:
        """One coalesced message per batch: the notifier re-reads and pushes these products."""
        if products:
            await self.redis.publish(self.keys.changes_channel, orjson.dumps(sorted(products)))
