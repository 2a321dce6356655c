"""The serving store's layout: the Redis keys the stream processor writes and the notifier reads.

This is a contract between two services like the topics are, so it lives here and neither side
imports the other. Every key starts with the namespace (``SOCIALPROOF_REDIS_NAMESPACE``, default
``sp``) so that a rebuild can fill a fresh namespace beside the live one.

Purchases (all writes are set operations, so duplicates and replays change nothing):

- ``{ns}:order:{order_id}``             hash  ``user``, ``ts`` (event ms), ``q:{product_id}`` qty
- ``{ns}:refund:{order_id}:{product}``  hash  refund_id -> refunded quantity
- ``{ns}:ub:{product_id}:{user_id}``    hash  order_id -> event ms, orders still (partly) kept
- ``{ns}:buyers:{product_id}``          zset  user_id scored by their latest kept purchase (ms)
- ``{ns}:user:{user_id}:products``      set   products the user has purchase state for
- ``{ns}:erased``                       set   erased users: their events are ignored from then on

Announcements: the processor publishes a JSON list of changed product ids on the pub/sub
channel ``{ns}:changes`` once per batch (coalesced), and the notifier pushes fresh state.
"""

from __future__ import annotations

#: rolling windows of distinct buyers, by event time: label -> milliseconds
BOUGHT_WINDOWS_MS: dict[str, int] = {"1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000}


class Keys:
    """Key builders for one namespace."""

    def __init__(self, namespace: str = "sp") -> None:
        self.ns = namespace

    def order(self, order_id: str) -> str:
        return f"{self.ns}:order:{order_id}"

    def refund(self, order_id: str, product_id: str) -> str:
        return f"{self.ns}:refund:{order_id}:{product_id}"

    def user_buys(self, product_id: str, user_id: str) -> str:
        return f"{self.ns}:ub:{product_id}:{user_id}"

    def buyers(self, product_id: str) -> str:
        return f"{self.ns}:buyers:{product_id}"

    def user_products(self, user_id: str) -> str:
        return f"{self.ns}:user:{user_id}:products"

    @property
    def erased(self) -> str:
        return f"{self.ns}:erased"

    @property
    def changes_channel(self) -> str:
        return f"{self.ns}:changes"
