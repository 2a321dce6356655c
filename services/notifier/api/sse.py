"""One Server-Sent Events response for every stream of the notifier (a product's proof, a
viewer's own notes), written straight to ASGI: the feed's first body, then one body chunk per
batch of changes, ``: ping`` comments when the stream was quiet for a heartbeat, a 30 s limit on
every send, an optional end (a viewer token's expiry), and a 503 instead of a stream when the
store fails before the first byte."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.notifier.clock import CoarseClock
from services.notifier.proof import STORE_ERRORS
from socialproof.http import RETRY_AFTER_S, error_response

SEND_TIMEOUT_S = 30


class SseFeed(Protocol):
    """What a stream writes: encoded SSE bodies, woken by its hub."""

    @property
    def closed(self) -> bool: ...

    async def initial(self) -> bytes: ...

    async def changes(self, timeout: float) -> bytes | None:
        """The next body (``b""`` or None: nothing to send) within ``timeout`` seconds."""

    def interrupt(self) -> None:
        """The client went away: wake ``changes`` and end the stream."""

    def close(self) -> None: ...


def store_unavailable(exc: Exception) -> Response:
    return error_response(
        503,
        "store_unavailable",
        f"the serving store is unavailable ({type(exc).__name__})",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class SseResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        feed: SseFeed,
        heartbeat_s: float,
        expires_at: float = math.inf,
        clock: CoarseClock | None = None,
    ) -> None:
        self.feed, self.heartbeat, self.expires_at = feed, heartbeat_s, expires_at
        #: checks the send deadline of each write (None: each write gets its own timer)
        self.clock = clock
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        feed = self.feed

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            feed.interrupt()

        clock = self.clock

        async def write(body: bytes) -> None:
            deadline = clock.deadline(SEND_TIMEOUT_S) if clock else asyncio.timeout(SEND_TIMEOUT_S)
            async with deadline:
                await send({"type": "http.response.body", "body": body, "more_body": True})

        try:
            initial = await feed.initial()
        except STORE_ERRORS as exc:  # before anything was sent: a proper 503, the browser retries
            feed.close()
            await store_unavailable(exc)(scope, receive, send)
            return
        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await write(initial)
            quiet_since = time.monotonic()
            while not feed.closed:
                left = self.expires_at - time.time()
                if left <= 0:
                    break  # e.g. the viewer token expired: the client comes back with a new one
                wait = min(self.heartbeat - (time.monotonic() - quiet_since), left)
                body = await feed.changes(max(wait, 0.0))
                if feed.closed:
                    break
                if body:
                    await write(body)
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= self.heartbeat:
                    await write(b": ping\n\n")
                    quiet_since = time.monotonic()
        except (TimeoutError, OSError, *STORE_ERRORS):
            pass  # too slow, gone, or the store failed: the browser reconnects (with its id)
        finally:
            watcher.cancel()
            feed.close()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
