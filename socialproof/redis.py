"""The Redis client every service uses for the serving store (asyncio, pooled, with timeouts).

Redis holds derived views only: everything in it can be rebuilt from the Kafka topics.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from socialproof.settings import Settings


def connect(settings: Settings, **overrides: object) -> aioredis.Redis:
    """A pooled asyncio client. Timeouts are short so an outage becomes a 503, not a hang."""
    options: dict[str, object] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "decode_responses": True,
        "max_connections": 256,
    }
    options.update(overrides)
    return aioredis.Redis.from_url(settings.redis_url, **options)
