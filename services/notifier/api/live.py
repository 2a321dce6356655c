"""Live push: Server-Sent Events and a WebSocket carrying the same messages.

- ``GET /v1/proof/stream?products=p1,p2[&viewer_token=…]`` (SSE): ``event: proof`` messages whose
  data is the proof JSON (with ``friends_bought`` for the token's viewer), each with an ``id``.
  The current state of every product comes first, then changes. A client that reconnects with
  ``Last-Event-ID`` (browsers do this by themselves) gets the current state at once and ids that
  continue after the one it saw. Heartbeats are SSE comments every ``sse_heartbeat_s``.
- ``/v1/proof/ws?products=…[&viewer_token=…][&last_event_id=n]`` (WebSocket): JSON text messages
  ``{"type": "proof", "id": "7", "data": {…}}`` and ``{"type": "heartbeat"}``; a refused request
  gets ``{"type": "error", …}`` and close code 4401 (bad viewer token), 4422 (bad product list)
  or 4429 (rate limited).

Each connection owns a :class:`~services.notifier.hub.Mailbox`: at most
``stream_max_updates_per_s`` messages per product, coalesced to the latest state, memory bounded
by the number of products watched; a client too slow to take a message within 30 s is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect

from services.notifier.api.deps import (
    RateLimited,
    Reader,
    Viewer,
    client_key,
    parse_product_list,
    viewer_from,
    with_friends,
)
from services.notifier.api.sse import SEND_TIMEOUT_S, SseResponse
from services.notifier.hub import Hub
from services.notifier.proof import STORE_ERRORS, ProofReader
from services.notifier.settings import NotifierSettings
from socialproof.http import ApiError

log = logging.getLogger(__name__)
router = APIRouter()


def _first_id(raw: str | None) -> int:
    """The id after the client's Last-Event-ID (ids are per connection, increasing)."""
    try:
        return int(raw) + 1 if raw else 1
    except ValueError:
        return 1


class Feed:
    """One live connection's view: its mailbox, its viewer, and its message ids.

    The hub offers ``(state, encoded JSON)`` pairs, encoded once per change for every watcher;
    only a connection with a viewer token encodes its own copy (with ``friends_bought``)."""

    def __init__(
        self,
        hub: Hub,
        reader: ProofReader,
        read_encoded,
        ids: list[str],
        viewer: str | None,
        min_interval_s: float,
        first_id: int,
    ) -> None:
        self.hub, self.reader, self.read_encoded = hub, reader, read_encoded
        self.ids, self.viewer = ids, viewer
        self.sequence = itertools.count(first_id)
        # Subscribed before the first read, so no change between the two can be missed.
        self.box = hub.subscribe(frozenset(ids), min_interval_s)

    @property
    def closed(self) -> bool:
        return self.box.closed

    async def initial(self) -> list[tuple[int, bytes]]:
        """The current state of every product, at once."""
        states = await self.read_encoded(self.ids)
        self.box.mark_sent(self.ids)
        return await self._messages(states)

    async def changes(self, timeout: float) -> list[tuple[int, bytes]]:
        """What changed (latest states, paced); nothing after ``timeout`` (time to heartbeat)."""
        return await self._messages(list((await self.box.take(timeout)).values()))

    async def _messages(self, items: list[tuple[dict, bytes | None]]) -> list[tuple[int, bytes]]:
        if self.viewer is None:
            return [(next(self.sequence), data or orjson.dumps(state)) for state, data in items]
        personal = await with_friends(self.reader, [state for state, _ in items], self.viewer)
        return [(next(self.sequence), orjson.dumps(state)) for state in personal]

    def close(self) -> None:
        self.hub.unsubscribe(self.box)


class ProofSse:
    """A :class:`Feed` as an SSE stream (:class:`services.notifier.api.sse.SseResponse`):
    ``event: proof`` messages with their ids."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    @property
    def closed(self) -> bool:
        return self.feed.closed

    async def initial(self) -> bytes:
        return _sse(await self.feed.initial())

    async def changes(self, timeout: float) -> bytes:
        return _sse(await self.feed.changes(timeout))

    def interrupt(self) -> None:
        self.feed.box.close()

    def close(self) -> None:
        self.feed.close()


def _sse(messages: list[tuple[int, bytes]]) -> bytes:
    return b"".join(b"id: %d\nevent: proof\ndata: %s\n\n" % (n, data) for n, data in messages)


def _min_interval(settings: NotifierSettings) -> float:
    """The shortest time between two messages about one product on one connection."""
    return 1.0 / settings.stream_max_updates_per_s


@router.get(
    "/v1/proof/stream",
    tags=["live"],
    summary="Server-Sent Events: `event: proof` with the proof JSON, now and on every change",
    response_class=SseResponse,
    # explicit: FastAPI cannot infer it from SseResponse, and /openapi.json would fail (500)
    status_code=200,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def proof_stream(
    request: Request,
    reader: Reader,
    viewer: Viewer,
    _: RateLimited,
    products: Annotated[str, Query(description="comma-separated product ids (1..100)")],
    last_event_id: Annotated[
        str | None, Query(description="like the Last-Event-ID header, for clients without it")
    ] = None,
) -> SseResponse:
    ids = parse_product_list(products)
    state = request.app.state
    settings: NotifierSettings = state.settings
    first_id = _first_id(request.headers.get("last-event-id") or last_event_id)
    feed = Feed(
        state.hub, reader, state.read_encoded, ids, viewer, _min_interval(settings), first_id
    )
    return SseResponse(ProofSse(feed), settings.sse_heartbeat_s, clock=state.hub.clock)


@router.websocket("/v1/proof/ws")
async def proof_ws(
    websocket: WebSocket,
    products: str = "",
    viewer_token: str | None = None,
    last_event_id: str | None = None,
) -> None:
    await websocket.accept()
    try:
        ids = parse_product_list(products)
        viewer = viewer_from(websocket, viewer_token)  # type: ignore[arg-type]
        wait = websocket.app.state.limiter.acquire(client_key(websocket))  # type: ignore[arg-type]
        if wait > 0:
            raise ApiError(429, "rate_limited", "too many requests from this client")
    except ApiError as exc:
        await websocket.send_text(
            orjson.dumps({"type": "error", "error": exc.code, "message": exc.message}).decode()
        )
        await websocket.close(code=4000 + exc.status, reason=exc.code)
        return
    state = websocket.app.state
    settings: NotifierSettings = state.settings
    heartbeat = settings.sse_heartbeat_s
    feed = Feed(
        state.hub,
        state.reader,
        state.read_encoded,
        ids,
        viewer,
        _min_interval(settings),
        _first_id(last_event_id),
    )

    async def drain() -> None:
        # Incoming messages are not part of the protocol; reading notices the disconnect.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await websocket.receive_text()
        feed.box.close()

    async def send(text: bytes) -> None:
        async with feed.hub.clock.deadline(SEND_TIMEOUT_S):
            await websocket.send_text(text.decode())

    receiver = asyncio.create_task(drain())
    try:
        for n, data in await feed.initial():
            await send(_ws(n, data))
        while not feed.closed:
            messages = await feed.changes(heartbeat)
            if feed.closed:
                break
            if not messages:
                await send(b'{"type":"heartbeat"}')
            for n, data in messages:
                await send(_ws(n, data))
    except (WebSocketDisconnect, TimeoutError, RuntimeError, *STORE_ERRORS):
        pass  # gone, too slow, or the store failed: the client reconnects for a fresh state
    finally:
        feed.close()
        receiver.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()


def _ws(n: int, data: bytes) -> bytes:
    return b'{"type":"proof","id":"%d","data":%s}' % (n, data)
