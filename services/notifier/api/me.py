"""The viewer's own live notifications: ``GET /v1/me/stream`` (Server-Sent Events).

A valid viewer token is required (``Authorization: Bearer`` or ``?viewer_token=``, as for the
per-viewer reads); the stream carries that viewer's notifications and nobody else's: the viewer
id comes from the token, never from the request.

Messages:

- ``event: note`` for each notification, data
  ``{"kind": "question", "question_id", "product_id", "at"}`` (a question was asked about a
  product the viewer bought; the stream processor writes them to ``{ns}:notes:{viewer}`` for
  viewers who allow it), oldest first, each with an ``id``;
- ``event: progress`` with ``?promotions=a,b`` (share-to-unlock promotions, at most 20): the
  viewer's progress in each (the JSON of ``GET /v1/promotions/{id}/progress``, issue #17), first
  when the stream opens and then whenever it changed; no ``id`` (a state, not a log: it never
  moves the notes' cursor); unknown promotions are left out;
- ``event: ready`` once the stream is live, after the notifications missed (data ``{}``), so that
  a client has an ``id`` to come back with even before its first notification;
- ``: ping`` comments every ``sse_heartbeat_s``.

Ids are cursors into the viewer's notes (``{event ms}-{question id}``, ``0`` for none). A client
that reconnects with ``Last-Event-ID`` (browsers do it by themselves; ``?last_event_id=`` for
clients without the header) first gets the notifications newer than it; without one, none of
the earlier ones. Then, live: the processor announces once per batch the users who got new notes
on ``{ns}:user-changes`` (and the sharers whose progress changed); the hub wakes only those
users' connections, which read their notes (and followed progress) once per wake
(announcements coalesce) and send what they have not sent yet.

The stream ends when the token expires (the client needs a new token to go on), when the server
stops, or after 30 s of a client not taking a message. 401 without or with a bad token, 429 when
rate limited, 503 (``Retry-After``) when the serving store is unavailable.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request

from services.notifier.api.deps import RateLimited, parse_product_list, viewer_claims_from
from services.notifier.api.sse import SseResponse
from services.notifier.hub import Hub
from services.notifier.promotions import MAX_FOLLOWED, PromotionReader
from services.notifier.proof import NOTES_READ, Note, ProofReader
from services.notifier.settings import NotifierSettings
from socialproof.http import ERROR_RESPONSES, ApiError, ErrorBody, FieldError

router = APIRouter()
RESPONSES: dict[int | str, dict] = {
    200: {"content": {"text/event-stream": {}}, "description": "the stream"},
    401: {"model": ErrorBody, "description": "no viewer token, or an expired or tampered one"},
    429: {"model": ErrorBody, "description": "too many requests; retry after `Retry-After` s"},
    **ERROR_RESPONSES,
}

Cursor = tuple[int, str]
#: before every note
START: Cursor = (0, "")


def parse_cursor(raw: str | None) -> Cursor | None:
    """A Last-Event-ID this stream sent (``0`` or ``{ms}-{question id}``); None for anything
    else (no id, another stream's id, garbage): then no earlier notification is sent."""
    if not raw:
        return None
    ms, _, question = raw.strip().partition("-")
    if not ms.isascii() or not ms.isdigit() or len(ms) > 15:
        return None
    if int(ms) == 0 and not question:
        return START
    return (int(ms), question) if question else None


def format_cursor(cursor: Cursor) -> bytes:
    return b"0" if cursor == START else f"{cursor[0]}-{cursor[1]}".encode()


def parse_promotions(raw: str | None) -> list[str]:
    """'a,b' -> ['a', 'b'] (at most MAX_FOLLOWED); 422 naming ``promotions`` when invalid."""
    if raw is None:
        return []
    ids = parse_product_list(raw, field="promotions")
    if len(ids) > MAX_FOLLOWED:
        problem = f"at most {MAX_FOLLOWED} promotion ids"
        raise ApiError(
            422,
            "validation_failed",
            f"invalid request: promotions: {problem}",
            fields=[FieldError(field="promotions", message=problem, type="value_error")],
        )
    return ids


class ProgressFollower:
    """The viewer's progress in some promotions, sent when it changed since last sent."""

    def __init__(self, promotions: PromotionReader, viewer: str, ids: list[str]) -> None:
        self.promotions, self.viewer, self.ids = promotions, viewer, ids
        self.sent: dict[str, bytes] = {}

    async def read(self) -> bytes:
        if not self.ids:
            return b""
        out = []
        states = await self.promotions.progress_many(self.ids, self.viewer)
        for promotion_id, state in zip(self.ids, states, strict=True):
            if state is None:
                continue
            data = orjson.dumps(state.model_dump(mode="json"))
            if self.sent.get(promotion_id) != data:
                self.sent[promotion_id] = data
                out.append(b"event: progress\ndata: %s\n\n" % data)
        return b"".join(out)


class NoteFeed:
    """One viewer connection: its doorbell in the hub, its cursor, the notes it has seen, and
    the promotions whose progress it follows."""

    def __init__(
        self,
        hub: Hub,
        reader: ProofReader,
        viewer: str,
        last_event_id: str | None,
        progress: ProgressFollower | None = None,
    ):
        self.hub, self.reader, self.viewer = hub, reader, viewer
        self.progress = progress
        self.cursor = parse_cursor(last_event_id)
        self.seen: set[str] = set()
        # Watched before the first read, so no announcement between the two can be missed.
        self.bell = hub.watch_viewer(viewer)

    @property
    def closed(self) -> bool:
        return self.bell.closed

    async def initial(self) -> bytes:
        """The notes newer than the client's Last-Event-ID (none without one), then ``ready``."""
        notes = await self.reader.notes(self.viewer)
        if self.cursor is None:
            self.cursor = max((note.key for note in notes), default=START)
            missed: list[Note] = []
        else:
            cursor = self.cursor
            missed = [note for note in notes if note.key > cursor]
        self.seen = {note.question_id for note in notes}
        messages = self._messages(missed)  # moves the cursor: ready carries the newest
        progress = await self.progress.read() if self.progress else b""
        ready = b"id: %s\nevent: ready\ndata: {}\n\n" % format_cursor(self.cursor)
        return messages + progress + ready

    async def changes(self, timeout: float) -> bytes | None:
        """The notes not sent yet once the viewer is announced (possibly none: ``b""``); None
        when nothing was announced within ``timeout``."""
        if not await self.bell.wait(timeout):
            return None
        notes = await self.reader.notes(self.viewer)
        fresh = [note for note in notes if note.question_id not in self.seen]
        self.seen.update(note.question_id for note in fresh)
        if len(self.seen) > 4 * NOTES_READ:  # bounded: forget the ones no longer kept
            self.seen = {note.question_id for note in notes}
        progress = await self.progress.read() if self.progress else b""
        return self._messages(fresh) + progress

    def _messages(self, notes: list[Note]) -> bytes:
        out = []
        for note in sorted(notes, key=lambda n: n.key):
            assert self.cursor is not None
            # ids never go back: a late note (older event time) keeps the newest cursor
            self.cursor = max(self.cursor, note.key)
            data = orjson.dumps(note.model_dump(mode="json"))
            out.append(b"id: %s\nevent: note\ndata: %s\n\n" % (format_cursor(self.cursor), data))
        return b"".join(out)

    def interrupt(self) -> None:
        self.bell.close()

    def close(self) -> None:
        self.hub.unwatch_viewer(self.bell)


@router.get(
    "/v1/me/stream",
    tags=["live"],
    summary="Server-Sent Events: the viewer's own notifications (`event: note`) and promotion "
    "progress (`event: progress`); viewer token",
    response_class=SseResponse,
    status_code=200,  # explicit: FastAPI cannot infer it from SseResponse
    responses=RESPONSES,
)
async def my_stream(
    request: Request,
    _: RateLimited,
    viewer_token: Annotated[
        str | None,
        Query(description="viewer token, for clients that cannot send an Authorization header"),
    ] = None,
    last_event_id: Annotated[
        str | None, Query(description="like the Last-Event-ID header, for clients without it")
    ] = None,
    promotions: Annotated[
        str | None,
        Query(
            description=f"comma-separated promotion ids (1..{MAX_FOLLOWED}) whose progress to push"
        ),
    ] = None,
) -> SseResponse:
    claims = viewer_claims_from(request, viewer_token)
    if claims is None:
        raise ApiError(
            401,
            "viewer_token_required",
            "this stream is a viewer's own: send their viewer token",
            headers={"WWW-Authenticate": 'Bearer realm="socialproof-viewer"'},
        )
    followed = parse_promotions(promotions)
    state = request.app.state
    settings: NotifierSettings = state.settings
    feed = NoteFeed(
        state.hub,
        state.reader,
        claims.viewer_id,
        request.headers.get("last-event-id") or last_event_id,
        ProgressFollower(state.promotions, claims.viewer_id, followed) if followed else None,
    )
    return SseResponse(feed, settings.sse_heartbeat_s, claims.expires_at, clock=state.hub.clock)
