"""An in-process cache of the read API's answers, pre-rendered, kept in step with the change
channel.

Why: a product page's read (``GET /v1/proof/products/{id}`` with a viewer token) used to cost a
pipelined Redis round trip (counters), a Lua call (``friends_bought``), two JSON encodings and a
hash per request; measured, the notifier spent ~0.8 ms of CPU per request and topped out at
~1,200 req/s (p99 87 ms at concurrency 64). Most reads repeat the previous answer: counters change
only when the processor announces a product on the change channel. So each answer is kept here,
rendered once (body bytes, ETag, header lines) and served until the product is announced again.

What is kept, keyed by ``(product, viewer)``:

- ``(product, None)``: the public proof (also used by live push and the batch endpoint);
- ``(product, viewer)``: the public proof plus that viewer's ``friends_bought``. The viewer id is
  part of the key, so a token for viewer A can only ever reach A's entries.

Correctness rules:

- **Invalidation**: the processor announces every product whose views changed, friend, consent,
  name and erasure effects included (``mark`` in ``services/counters/store.py``); the hub
  calls :meth:`ProofCache.invalidate` with every announced product before anything else.
- **Stale fills**: a read that started before a change but finishes after its invalidation must
  not be stored. Every read takes a :class:`Ticket` (the invalidation epoch) before it starts;
  :meth:`ProofCache.put` refuses it if the product was invalidated (or the cache flushed) since.
  Marks are bounded: the oldest are dropped first and raise a floor below which tickets are
  refused, which only ever refuses more.
- **Event-time windows** (bought 1 h / 24 h / 7 d, shares 1 h / 24 h) expire without any event,
  so nothing announces them: every entry lives at most ``max_age_s`` (a setting, 1 s by default)
  from the moment its read started.
- **No channel, no cache**: while the hub is not subscribed (start-up, Redis outage) changes
  cannot be seen, so nothing is served from or stored in the cache; (re)subscribing and a
  namespace switch flush everything.
- **Bounded**: at most ``max_entries`` entries, least recently used dropped first.

:class:`CachedProofs` reads through the cache (one read per answer at a time, refreshed ahead of
its expiry while it is being asked for); :mod:`services.notifier.fastpath` serves hits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from services.notifier.proof import ProofReader, to_json

log = logging.getLogger(__name__)

#: an entry hit past a share of its maximum age drawn from this range (per entry, so that
#: entries filled together are not all read again at once) is read again in the background
REFRESH_AFTER = (0.5, 0.9)


@dataclass(frozen=True, slots=True)
class Rendered:
    """One answer, encoded once: what every request for it sends."""

    state: dict  # the JSON object; shared, never mutate it
    body: bytes
    etag: str
    cache_control: str
    #: when the read that produced it started (``time.monotonic``): its age counts from there
    read_at: float
    #: the route's headers, encoded once for the fast path, in the order the FastAPI route sends
    #: them: (etag, cache-control), then (content-length, content-type) of a 200
    head: tuple[tuple[bytes, bytes], ...]
    length: tuple[tuple[bytes, bytes], ...]


def etag_of(body: Any) -> str:
    """A weak ETag over the content, ``as_of`` excluded (it changes with every read). ``as_of``
    is a top-level field of a proof (services/notifier/proof.py); nothing nested carries one, so
    only the top level is copied: walking the whole answer in Python took 13 % of the notifier's
    Python time at 10,000 SSE sends/s (bench sse_fanout_x5, py-spy)."""
    if isinstance(body, dict) and "as_of" in body:
        body = {k: v for k, v in body.items() if k != "as_of"}
    fingerprint = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return 'W/"' + hashlib.blake2b(fingerprint, digest_size=12).hexdigest() + '"'


def cache_control(private: bool, max_age: int) -> str:
    # Friend data is per viewer: browsers may keep it, shared caches never.
    return "private, no-cache" if private else f"public, max-age={max_age}"


def render(state: dict, *, private: bool, max_age: int, read_at: float) -> Rendered:
    # a right-sized copy: orjson's bytes keep a 4 KiB buffer (measured), 5,000 entries 20 MB
    body = memoryview(orjson.dumps(state)).tobytes()
    etag = etag_of(state)
    control = cache_control(private, max_age)
    return Rendered(
        state=state,
        body=body,
        etag=etag,
        cache_control=control,
        read_at=read_at,
        head=((b"etag", etag.encode()), (b"cache-control", control.encode())),
        length=((b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")),
    )


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a read: the invalidation epoch and the time the read started."""

    epoch: int
    at: float


Key = tuple[str, str | None]


class ProofCache:
    """Rendered answers by ``(product, viewer or None)``; see the module docstring."""

    def __init__(
        self,
        max_entries: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_age = max_age_s
        self.clock = clock
        #: False while changes cannot be seen (the hub is not subscribed)
        self.enabled = False
        #: key -> (answer, epoch of its ticket, time from which a hit asks for a refresh)
        self._entries: OrderedDict[Key, tuple[Rendered, int, float]] = OrderedDict()
        self._epoch = 0
        #: product -> epoch of its latest invalidation, oldest first
        self._marks: OrderedDict[str, int] = OrderedDict()
        #: tickets older than this are refused (a flush, or dropped marks)
        self._floor = 0
        #: told about each hit on an entry due for a refresh (see REFRESH_AFTER)
        self.on_aging: Callable[[Key], None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def ticket(self) -> Ticket:
        return Ticket(self._epoch, self.clock())

    def get(self, product: str, viewer: str | None = None) -> Rendered | None:
        key = (product, viewer)
        entry = self._entries.get(key)
        if entry is None:
            return None
        rendered, epoch, refresh_at = entry
        now = self.clock()
        age = now - rendered.read_at
        if (
            not self.enabled
            or age >= self.max_age
            or epoch < self._floor
            or self._marks.get(product, 0) > epoch
        ):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        if now >= refresh_at and self.on_aging is not None:
            self.on_aging(key)
        return rendered

    def current(self, product: str, ticket: Ticket) -> bool:
        """Whether a read that took ``ticket`` may still be kept (no change of the product, no
        flush since)."""
        return (
            self.enabled
            and ticket.epoch >= self._floor
            and self._marks.get(product, 0) <= ticket.epoch
        )

    def put(self, ticket: Ticket, product: str, viewer: str | None, rendered: Rendered) -> bool:
        """Keep ``rendered`` unless the product changed (or the cache was flushed) since
        ``ticket`` was taken, or it is already too old; says whether it was kept."""
        if (
            self.max_age <= 0
            or not self.current(product, ticket)
            or rendered.read_at + self.max_age <= self.clock()
        ):
            return False
        key = (product, viewer)
        refresh_at = rendered.read_at + self.max_age * random.uniform(*REFRESH_AFTER)
        self._entries[key] = (rendered, ticket.epoch, refresh_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, products: Iterable[str]) -> None:
        """These products changed: their entries are stale, and so is every read in flight."""
        self._epoch += 1
        marks = self._marks
        for product in products:
            marks[product] = self._epoch
            marks.move_to_end(product)
        while len(marks) > self.max_entries:
            _, epoch = marks.popitem(last=False)
            self._floor = max(self._floor, epoch)

    def flush(self) -> None:
        """Forget everything, reads in flight included (reconnect, namespace switch)."""
        self._epoch += 1
        self._floor = self._epoch
        self._entries.clear()
        self._marks.clear()

    def suspend(self) -> None:
        """Changes can no longer be seen: serve and store nothing until :meth:`resume`."""
        self.enabled = False
        self.flush()

    def resume(self) -> None:
        """Subscribed (again): start from nothing, since changes may have been missed."""
        self.flush()
        self.enabled = True


class CachedProofs:
    """Reads social proof through a :class:`ProofCache`: hits are answered from memory, misses
    read the serving store (:class:`~services.notifier.proof.ProofReader`) and are kept.

    Three things keep the tail short under load (measured: without them every entry expired at
    once each second and the misses piled up, p99 84-132 ms at concurrency 64):

    - one read per answer at a time: requests that miss while a read of the same answer is in
      flight wait for it, unless the product changed since that read started;
    - refresh ahead: a hit on an entry past 50-90 % of its maximum age starts a read in the
      background, so an answer that is asked for keeps being served from memory;
    - the point in that range is drawn per entry: entries filled together (a cold start) would
      otherwise all be read again in the same few milliseconds, every time, stalling the loop.
    """

    def __init__(self, reader: ProofReader, cache: ProofCache, public_max_age: int) -> None:
        self.reader, self.cache, self.public_max_age = reader, cache, public_max_age
        self._inflight: dict[Key, tuple[Ticket, asyncio.Task[Rendered]]] = {}
        cache.on_aging = self._refresh

    async def public(self, product_ids: list[str]) -> list[Rendered]:
        """Public proof of each product; several misses are read in one round trip."""
        cache = self.cache
        found = {p: hit for p in product_ids if (hit := cache.get(p)) is not None}
        missing = [p for p in product_ids if p not in found]
        if len(missing) == 1:
            found[missing[0]] = await self._once((missing[0], None))
        elif missing:
            ticket = cache.ticket()
            for proof in await self.reader.read_many(missing):
                rendered = self._render_public(proof, ticket)
                cache.put(ticket, proof.product_id, None, rendered)
                found[proof.product_id] = rendered
        return [found[p] for p in product_ids]

    async def personal(self, viewer: str, product_id: str) -> Rendered:
        """Public proof plus ``viewer``'s ``friends_bought`` (the authenticated viewer only)."""
        hit = self.cache.get(product_id, viewer)
        return hit if hit is not None else await self._once((product_id, viewer))

    async def _once(self, key: Key) -> Rendered:
        pending = self._inflight.get(key)
        if pending is not None and self.cache.current(key[0], pending[0]):
            task = pending[1]
        else:
            task = self._start(key)
        # shielded: a request that goes away does not cancel the read others wait for
        return await asyncio.shield(task)

    def close(self) -> None:
        """Stop the reads in flight (the notifier is stopping)."""
        for _, task in list(self._inflight.values()):
            task.cancel()

    def _refresh(self, key: Key) -> None:
        if key not in self._inflight:
            self._start(key)

    def _start(self, key: Key) -> asyncio.Task[Rendered]:
        ticket = self.cache.ticket()  # before the reads: a change during them refuses the fill
        task = asyncio.ensure_future(self._read(key, ticket))
        self._inflight[key] = (ticket, task)
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: Key, task: asyncio.Task[Rendered]) -> None:
        if self._inflight.get(key, (None, None))[1] is task:
            del self._inflight[key]
        if not task.cancelled() and task.exception() is not None:
            # a background refresh has no one waiting: the entry just ages out
            log.debug("proof read failed", extra={"error": repr(task.exception())})

    async def _read(self, key: Key, ticket: Ticket) -> Rendered:
        product_id, viewer = key
        if viewer is None:
            (proof,) = await self.reader.read_many([product_id])
            rendered = self._render_public(proof, ticket)
        else:
            # both parts fresh, in one round trip; the public part is kept too
            proof, (count, names) = await self.reader.read_personal(product_id, viewer)
            public = self._render_public(proof, ticket)
            self.cache.put(ticket, product_id, None, public)
            state = {**public.state, "friends_bought": {"count": count, "names": names}}
            rendered = render(state, private=True, max_age=self.public_max_age, read_at=ticket.at)
        self.cache.put(ticket, product_id, viewer, rendered)
        return rendered

    def _render_public(self, proof: Any, ticket: Ticket) -> Rendered:
        return render(to_json(proof), private=False, max_age=self.public_max_age, read_at=ticket.at)
