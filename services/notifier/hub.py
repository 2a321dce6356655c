"""Fan-out of counter changes to live connections (SSE and WebSocket alike).

One Redis pub/sub subscription per notifier process listens on the processor's change channel.
For each announced product that someone watches, the public state is read once and offered to
every watching connection's *mailbox*: a dict holding only the latest state per product. So a
connection's memory is bounded by the number of products it watches, a slow client never grows a
queue nor blocks the others (offering never waits), and it gets the newest state when it reads.

A mailbox also paces each product: a state is handed out at most once per ``min_interval_s``
(4 per second by default); changes arriving faster are coalesced to the latest.

The hub also wakes per-viewer streams (``GET /v1/me/stream``): the processor announces, once per
batch, the users who got new notifications on a second channel (``{ns}:user-changes``, a JSON
list of user ids), heard on the same subscription. Each such connection holds a :class:`Doorbell`
rung only for its own viewer; ringing is a flag, so announcements arriving faster than the
connection reads its notes coalesce into one read.

The hub also keeps the read API's cache (:class:`~services.notifier.cache.ProofCache`) in step
with the channel: every announced product is invalidated before anything else happens, and the
cache is used only while the subscription stands (flushed when it is confirmed, suspended when it
is lost), since changes announced while not subscribed are never seen.

On a Redis Cluster (#16) the processor's classic ``PUBLISH`` reaches every node over the cluster
bus, so the hub subscribes with a plain connection to one node (:class:`ClusterSubscriber`) and,
when that node goes away, to the next one: each new subscription is confirmed like the first,
so the cache is flushed and every watcher refreshed, and nothing announced in between is lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from services.notifier.cache import ProofCache
from services.notifier.clock import CoarseClock
from socialproof.metrics import LIVE_CONNECTIONS, PIPELINE_STAGE

#: the notifier's stages of ``socialproof_pipeline_stage_seconds`` (children made once)
HUB_READ = PIPELINE_STAGE.labels("hub_read")
PUSH = PIPELINE_STAGE.labels("push")

log = logging.getLogger(__name__)


class Mailbox:
    """Latest pending state per product for one connection, paced per product."""

    __slots__ = (
        "products",
        "min_interval",
        "pending",
        "offered_at",
        "last_sent",
        "ready",
        "closed",
        "clock",
    )

    def __init__(
        self,
        products: frozenset[str],
        min_interval_s: float = 0.0,
        clock: CoarseClock | None = None,
    ) -> None:
        self.products = products
        #: the hub's clock for long waits (None: each wait gets its own timer)
        self.clock = clock
        self.min_interval = min_interval_s
        self.pending: dict[str, dict] = {}
        #: when the oldest unsent change of each pending product was offered (loop time)
        self.offered_at: dict[str, float] = {}
        self.last_sent: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.closed = False

    def offer(self, product_id: str, state: dict, at: float | None = None) -> None:
        """``at``: the loop time of the offer (the hub reads the clock once per announcement)."""
        self.pending[product_id] = state  # replaces anything unsent: coalesce to the latest
        if product_id not in self.offered_at:
            self.offered_at[product_id] = asyncio.get_running_loop().time() if at is None else at
        self.ready.set()

    def mark_sent(self, product_ids: list[str] | frozenset[str]) -> None:
        """Record that the connection just sent these products (e.g. the initial state)."""
        now = asyncio.get_running_loop().time()
        for product_id in product_ids:
            self.last_sent[product_id] = now
            self.pending.pop(product_id, None)
            self.offered_at.pop(product_id, None)

    def close(self) -> None:
        """The connection is gone: wake up its sender so it can finish."""
        self.closed = True
        self.ready.set()

    async def take(self, timeout: float) -> dict[str, dict]:
        """Wait up to ``timeout`` for states that are due and return them (possibly none).

        A product is due when it has a pending state and was last sent at least
        ``min_interval`` ago; a product that changes 100 times a second is therefore sent at most
        ``1 / min_interval`` times a second, always with its latest state.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed:
            now = loop.time()
            due = {
                product_id: state
                for product_id, state in self.pending.items()
                if now - self.last_sent.get(product_id, float("-inf")) >= self.min_interval
            }
            if due:
                for product_id in due:
                    del self.pending[product_id]
                    self.last_sent[product_id] = now
                    PUSH.observe(now - self.offered_at.pop(product_id, now))
                return due
            wait = deadline - now
            if wait <= 0:
                return {}
            if self.pending:  # something is waiting for its turn: wake up when it is due
                next_due = min(self.last_sent[p] for p in self.pending) + self.min_interval
                wait = min(wait, next_due - now)
            self.ready.clear()
            if self.clock is not None:
                await self.clock.wait(self.ready, wait)
                continue
            try:
                async with asyncio.timeout(wait):
                    await self.ready.wait()
            except TimeoutError:
                pass
        return {}


class Doorbell:
    """One per-viewer connection's wake-up: rung when its viewer may have new notifications."""

    __slots__ = ("viewer", "ready", "closed")

    def __init__(self, viewer: str) -> None:
        self.viewer = viewer
        self.ready = asyncio.Event()
        self.closed = False

    def ring(self) -> None:
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def wait(self, timeout: float) -> bool:
        """Whether it was rung (since the last wait) within ``timeout``; rings coalesce."""
        if not self.ready.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self.ready.wait()
            except TimeoutError:
                return False
        self.ready.clear()
        return not self.closed


class Subscribes(Protocol):
    """What the hub subscribes through: a plain client, or :class:`ClusterSubscriber`."""

    def pubsub(self) -> Any: ...


class ClusterSubscriber:
    """Pub/sub connections to the nodes of a Redis Cluster, one node per subscription.

    Classic ``PUBLISH`` on any node is forwarded to every node over the cluster bus, so any
    node, master or replica, hears every announcement. Each :meth:`pubsub` connects a plain
    client (``url`` with that node's host and port; the URL's credentials and TLS) to the next
    node of the cluster client's current view, starting at a random one so notifier replicas
    spread over the nodes: when the hub's node dies, its next subscription goes to another."""

    def __init__(
        self, cluster: AsyncRedisCluster, url: str, first: int | None = None, **options: Any
    ) -> None:
        """``first``: the node (in name order) of the first subscription (None: a random one);
        ``options`` go to the plain client."""
        self.cluster, self.url, self.options = cluster, url, options
        self._turn = random.randrange(1 << 16) if first is None else first
        #: ``host:port`` of the node of the current subscription (None before the first)
        self.node: str | None = None

    @asynccontextmanager
    async def pubsub(self) -> AsyncIterator[PubSub]:
        await self.cluster.initialize()  # the first call learns the nodes; later ones refresh
        nodes = sorted(self.cluster.get_nodes(), key=lambda node: node.name)
        if not nodes:
            raise ConnectionError(f"no node of the Redis Cluster at {self.url} is known")
        node = nodes[self._turn % len(nodes)]
        self._turn += 1
        parts = urlsplit(self.url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{node.host}:{node.port}" if credentials else node.name
        client = aioredis.Redis.from_url(parts._replace(netloc=netloc).geturl(), **self.options)
        self.node = node.name
        try:
            async with client.pubsub() as pubsub:
                yield pubsub
        finally:
            await client.aclose()


class Hub:
    def __init__(
        self,
        redis: Subscribes,
        channel: str,
        read_encoded: Callable[[list[str]], Awaitable[list[tuple[dict, bytes]]]],
        cache: ProofCache | None = None,
        user_channel: str | None = None,
    ) -> None:
        self.redis = redis
        self.channel = channel
        #: the processor's per-batch list of users with new notifications (None: not heard)
        self.user_channel = user_channel
        self.read_encoded = read_encoded
        self.cache = cache
        self.watchers: dict[str, set[Mailbox]] = defaultdict(set)
        self.boxes: set[Mailbox] = set()
        #: viewer -> the doorbells of that viewer's connections
        self.viewers: dict[str, set[Doorbell]] = defaultdict(set)
        self.bells: set[Doorbell] = set()
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()
        #: the connections' heartbeat waits and send deadlines (services.notifier.clock)
        self.clock = CoarseClock()

    def subscribe(self, products: frozenset[str], min_interval_s: float = 0.0) -> Mailbox:
        box = Mailbox(products, min_interval_s, self.clock)
        for product in products:
            self.watchers[product].add(box)
        self.boxes.add(box)
        LIVE_CONNECTIONS.inc()
        return box

    def watch_viewer(self, viewer: str) -> Doorbell:
        """A per-viewer connection opens: it is woken when its viewer is announced."""
        bell = Doorbell(viewer)
        self.viewers[viewer].add(bell)
        self.bells.add(bell)
        LIVE_CONNECTIONS.inc()
        return bell

    def unwatch_viewer(self, bell: Doorbell) -> None:
        bell.close()
        if bell in self.bells:
            self.bells.discard(bell)
            LIVE_CONNECTIONS.dec()
        bells = self.viewers.get(bell.viewer)
        if bells is not None:
            bells.discard(bell)
            if not bells:
                del self.viewers[bell.viewer]

    def ring(self, viewers: list[str]) -> None:
        """Wake the connections of these viewers (only theirs)."""
        for viewer in viewers:
            for bell in self.viewers.get(viewer, ()):
                bell.ring()

    def ring_all(self) -> None:
        """Wake every per-viewer connection (announcements may have been missed)."""
        for bell in self.bells:
            bell.ring()

    def close_all(self) -> None:
        """End every live connection (the server is shutting down): each stream finishes its
        response and the client reconnects, to this process's successor or another replica."""
        for boxes in list(self.watchers.values()):
            for box in list(boxes):
                box.close()
        for bell in list(self.bells):
            bell.close()

    def unsubscribe(self, box: Mailbox) -> None:
        box.close()
        if box in self.boxes:
            self.boxes.discard(box)
            LIVE_CONNECTIONS.dec()
        for product in box.products:
            watchers = self.watchers.get(product)
            if watchers is not None:
                watchers.discard(box)
                if not watchers:
                    del self.watchers[product]

    @property
    def connections(self) -> int:
        return len(self.boxes) + len(self.bells)

    def start(self) -> None:
        self.clock.start()
        self._task = asyncio.create_task(self._listen(), name="notifier-hub")

    async def stop(self) -> None:
        if self.cache is not None:
            self.cache.suspend()
        for box in list(self.boxes):
            box.close()  # lets every live connection finish promptly
        for bell in list(self.bells):
            bell.close()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.clock.stop()

    async def _listen(self) -> None:
        """Subscribe and dispatch forever; on a Redis outage, resubscribe with backoff."""
        delay = 0.2
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    channels = [self.channel]
                    if self.user_channel is not None:
                        channels.append(self.user_channel)
                    await pubsub.subscribe(*channels)
                    async for message in pubsub.listen():
                        if message["channel"] == self.user_channel:
                            if message["type"] == "message":
                                self.ring(_user_ids(message["data"]))
                            elif message["type"] == "subscribe":
                                self.ring_all()  # announcements may have been missed
                        elif message["type"] == "message":
                            heard = asyncio.get_running_loop().time()
                            products = orjson.loads(message["data"])
                            if self.cache is not None:
                                self.cache.invalidate(products)
                            if await self.dispatch(products):
                                HUB_READ.observe(asyncio.get_running_loop().time() - heard)
                        elif message["type"] == "subscribe":
                            # Confirmed: from here on no change is missed. Changes may have
                            # happened while we were not subscribed: refresh everyone.
                            if self.cache is not None:
                                self.cache.resume()
                            self.connected.set()
                            delay = 0.2
                            await self.dispatch(list(self.watchers))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.cache is not None:
                    self.cache.suspend()
                self.connected.clear()
                log.warning(
                    "change subscription lost; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def dispatch(self, products: list[str]) -> bool:
        """Offer the current state of the watched ``products`` to their watchers; whether any
        was watched."""
        watched = [p for p in dict.fromkeys(products) if p in self.watchers]
        if not watched:
            return False
        # each state comes encoded once (by the cache) for every watcher
        states = await self.read_encoded(watched)
        now = asyncio.get_running_loop().time()
        for offered in states:
            product_id = offered[0]["product_id"]
            for box in list(self.watchers.get(product_id, ())):
                box.offer(product_id, offered, now)
        return True


def _user_ids(data: str | bytes) -> list[str]:
    """The user ids of a ``{ns}:user-changes`` message; nothing for anything else."""
    try:
        users = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.warning("unreadable user-changes message", extra={"data": str(data)[:200]})
        return []
    if not isinstance(users, list):
        return []
    return [u for u in users if isinstance(u, str)]
