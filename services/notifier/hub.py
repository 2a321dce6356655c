"""Fan-out of counter changes to live connections (SSE today, WebSocket alike).

One Redis pub/sub subscription per notifier process listens on the processor's change channel.
For each announced product that someone watches, the state is read once and offered to every
watching connection's *mailbox*: a dict holding only the latest state per product. A slow client
therefore never grows a queue and never blocks the others; it just gets the newest state when it
reads next.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import orjson
import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class Mailbox:
    """Latest pending state per product for one connection."""

    def __init__(self, products: frozenset[str]) -> None:
        self.products = products
        self.pending: dict[str, dict] = {}
        self.ready = asyncio.Event()

    def offer(self, product_id: str, state: dict) -> None:
        self.pending[product_id] = state  # replaces anything unread: coalesce to the latest
        self.ready.set()

    async def take(self, timeout: float) -> dict[str, dict]:
        """Wait up to ``timeout`` for something to send; returns it all (possibly nothing)."""
        if not self.pending:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except TimeoutError:
                return {}
        taken, self.pending = self.pending, {}
        self.ready.clear()
        return taken


class Hub:
    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        read_states: Callable[[list[str]], Awaitable[list[dict]]],
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.read_states = read_states
        self.watchers: dict[str, set[Mailbox]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    def subscribe(self, products: frozenset[str]) -> Mailbox:
        box = Mailbox(products)
        for product in products:
            self.watchers[product].add(box)
        return box

    def unsubscribe(self, box: Mailbox) -> None:
        for product in box.products:
            watchers = self.watchers.get(product)
            if watchers is not None:
                watchers.discard(box)
                if not watchers:
                    del self.watchers[product]

    @property
    def connections(self) -> int:
        return len({box for boxes in self.watchers.values() for box in boxes})

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="notifier-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _listen(self) -> None:
        """Subscribe and dispatch forever; on a Redis outage, resubscribe with backoff."""
        delay = 0.2
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.connected.set()
                    delay = 0.2
                    # Changes may have happened while we were not subscribed: refresh everyone.
                    await self.dispatch(list(self.watchers))
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            await self.dispatch(orjson.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning(
                    "change subscription lost; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def dispatch(self, products: list[str]) -> None:
        watched = [p for p in products if p in self.watchers]
        if not watched:
            return
        for state in await self.read_states(watched):
            for box in list(self.watchers.get(state["product_id"], ())):
                box.offer(state["product_id"], state)
