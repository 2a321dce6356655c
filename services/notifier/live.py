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
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from services.notifier.deps import (
    RateLimited,
    Reader,
    Viewer,
    client_key,
    parse_product_list,
    viewer_from,
    with_friends,
)
from socialproof.http import ApiError
from socialproof.settings import NotifierSettings

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 30


def _first_id(raw: str | None) -> int:
    """The id after the client's Last-Event-ID (ids are per connection, increasing)."""
    try:
        return int(raw) + 1 if raw else 1
    except ValueError:
        return 1


def install(app: FastAPI, settings: NotifierSettings) -> None:
    heartbeat = settings.sse_heartbeat_s
    min_interval = 1.0 / settings.stream_max_updates_per_s

    @app.get(
        "/v1/proof/stream",
        tags=["live"],
        summary="Server-Sent Events: `event: proof` with the proof JSON, now and on every change",
        response_class=EventSourceResponse,
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
    ) -> EventSourceResponse:
        ids = parse_product_list(products)
        hub = request.app.state.hub
        read_states = request.app.state.read_states
        sequence = itertools.count(_first_id(request.headers.get("last-event-id") or last_event_id))
        # Subscribed before reading, so no change between the two can be missed.
        box = hub.subscribe(frozenset(ids), min_interval)

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                states = await with_friends(reader, await read_states(ids), viewer)
                box.mark_sent(ids)
                for state in states:
                    yield _sse(state, next(sequence))
                while not box.closed:
                    due = await box.take(timeout=heartbeat)
                    for state in await with_friends(reader, list(due.values()), viewer):
                        yield _sse(state, next(sequence))
            finally:
                hub.unsubscribe(box)

        return EventSourceResponse(
            events(),
            ping=heartbeat,
            send_timeout=SEND_TIMEOUT_S,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.websocket("/v1/proof/ws")
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
        reader, hub = state.reader, state.hub
        sequence = itertools.count(_first_id(last_event_id))
        box = hub.subscribe(frozenset(ids), min_interval)

        async def drain() -> None:
            # Incoming messages are not part of the protocol; reading notices the disconnect.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    await websocket.receive_text()
            box.close()

        async def send(message: dict) -> None:
            await asyncio.wait_for(
                websocket.send_text(orjson.dumps(message).decode()), SEND_TIMEOUT_S
            )

        receiver = asyncio.create_task(drain())
        try:
            states = await with_friends(reader, await state.read_states(ids), viewer)
            box.mark_sent(ids)
            for proof in states:
                await send({"type": "proof", "id": str(next(sequence)), "data": proof})
            while not box.closed:
                due = await box.take(timeout=heartbeat)
                if not due:
                    if not box.closed:
                        await send({"type": "heartbeat"})
                    continue
                for proof in await with_friends(reader, list(due.values()), viewer):
                    await send({"type": "proof", "id": str(next(sequence)), "data": proof})
        except (WebSocketDisconnect, TimeoutError, RuntimeError):
            pass  # gone, or too slow: the client reconnects and gets the current state
        finally:
            hub.unsubscribe(box)
            receiver.cancel()
            with contextlib.suppress(Exception):
                await websocket.close()


def _sse(state: dict, seq: int) -> ServerSentEvent:
    return ServerSentEvent(data=orjson.dumps(state).decode(), event="proof", id=str(seq))
