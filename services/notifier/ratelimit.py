"""Per-client rate limiting of the public read API: a token bucket per client address.

In-process and in-memory on purpose: the limit protects this process (and the Redis behind it)
from one noisy client; with N replicas a client gets at most N times the rate, which is fine for
that purpose. The table is bounded (least recently used clients are dropped first), so a flood of addresses cannot
grow it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        # client -> (tokens left, time of last update); ordered by last use
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, client: str, now: float | None = None) -> float:
        """Take one token for ``client``: 0.0 if allowed, else seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            self._evict()
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def retry_after_header(self, wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))

    def _evict(self) -> None:
        # Ordered by last use, so the front is the longest idle client (most likely refilled).
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
