"""``POST /v1/beacons``: the widget's badge interactions (impressions, clicks, dismissals), each
published as its own event to ``storefront.interactions`` (issue #18; the notifier is the topic's
only writer; the stream processor counts them, :mod:`services.counters`).

Public, made for ``navigator.sendBeacon``: the JSON body may come as ``text/plain`` (the one
type a cross-origin beacon sends without a CORS preflight) or ``application/json``. A viewer token
(``Authorization: Bearer`` or ``?viewer_token=``, since a beacon cannot set headers) adds the
viewer to every event; a bad one is 401. No other personal data: the visitor id is pseudonymous.

The order of the checks, and what each answers:

1. ``Sec-GPC: 1`` or ``DNT: 1``, or ``SOCIALPROOF_INTERACTION_TRACKING=false``: 204 and nothing
   published, before the body is even read.
2. The per-client rate limit of the read API (429), then the body: over
   ``SOCIALPROOF_BEACON_MAX_BYTES`` 413 (by Content-Length, or counted while reading), another
   media type 415, not JSON 400.
3. The fields (422 naming each, e.g. ``events[0].product_id``): pydantic's checks, then at most
   ``SOCIALPROOF_BEACON_MAX_EVENTS`` events (``events``).
4. The visitor's own rate limit (``SOCIALPROOF_BEACON_RATE_PER_S``, burst
   ``SOCIALPROOF_BEACON_BURST``; 429 with ``Retry-After``).
5. What needs the clock and the experiments (422 naming the field): ``at`` at most 5 min ahead
   and 7 days old; an ``experiment_id`` that exists and has started, a product in its scope, the
   ``variant`` the visitor is assigned. An event of a stopped experiment is published without it
   (it counts for the plain badge).

Then every event is published at once and the answer, 202 ``{"accepted": n}``, waits for the
broker's acknowledgement of each (a 202 is never lost). If any is not acknowledged the answer is
503 and some events may have been recorded: the client sends the same beacon again. Event ids are
deterministic (:func:`event_id`: the visitor, kind, product, experiment and ``at`` in ms), so the
events recorded the first time are duplicates the processor drops. ``occurred_at`` is ``at``;
each event carries its attribution window (the experiment's, or 24 h without one), so the fact
is self-contained for the processor.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from pydantic import ValidationError

from contracts.events import (
    BadgeClicked,
    BadgeDismissed,
    BadgeInteractionPayload,
    BadgeViewed,
    Event,
)
from contracts.views import DEFAULT_ATTRIBUTION_WINDOW_H
from services.notifier.api.deps import rate_limit, viewer_from
from services.notifier.experiment_schemas import BeaconAccepted, BeaconEvent, BeaconIn
from services.notifier.experiments import ExperimentRegistry, ExperimentState, assign
from services.notifier.ratelimit import RateLimiter
from services.notifier.settings import NotifierSettings
from socialproof.http import ERROR_RESPONSES, RETRY_AFTER_S, ApiError, ErrorBody, FieldError
from socialproof.kafka import EventPublisher, PublishFailed
from socialproof.topicview import ViewUnavailable

SERVICE = "notifier"
log = logging.getLogger("socialproof.notifier")
router = APIRouter(tags=["interactions"])

#: uuid5 namespace of beacon event ids (:func:`event_id`). Fixed for ever: a re-sent beacon
#: must get the same ids, whichever notifier process or version takes it.
BEACON_EVENT_NAMESPACE = uuid.UUID("8d3c6a52-41f7-5e0b-a9c4-2f6e1b7d9a03")
#: ``at`` may run ahead of the server's clock by this much (browsers' clocks drift)
MAX_AHEAD = timedelta(minutes=5)
#: and be at most this old (a beacon kept in a closed tab's queue is sent late, not weeks late)
MAX_AGE = timedelta(days=7)
#: how long an unknown experiment waits for the view to reach the topic's end
SYNC_WAIT_S = 2.0
ACCEPTED_TYPES = ("application/json", "text/plain", "")
EVENT_TYPES: dict[str, type[Event]] = {
    "impression": BadgeViewed,
    "click": BadgeClicked,
    "dismiss": BadgeDismissed,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BEACON_EVENTS = Counter(
    "socialproof_beacon_events_total",
    "Badge interaction events the notifier published from beacons (acknowledged by the broker)",
    ["kind"],
)
BEACONS_REFUSED = Counter(
    "socialproof_beacons_refused_total",
    "Beacons answered without publishing, by reason (privacy: GPC/DNT or tracking off)",
    ["reason"],
)


def event_id(
    visitor_id: str, kind: str, product_id: str, experiment_id: str | None, at: datetime
) -> uuid.UUID:
    """The deterministic id of a beacon event: the same interaction sent twice is one event."""
    at_ms = (at - _EPOCH) // timedelta(milliseconds=1)
    name = f"{visitor_id}|{kind}|{product_id}|{experiment_id or ''}|{at_ms}"
    return uuid.uuid5(BEACON_EVENT_NAMESPACE, name)


def refused(reason: str, error: ApiError) -> ApiError:
    BEACONS_REFUSED.labels(reason).inc()
    return error


def tracking_refused(request: Request, settings: NotifierSettings) -> bool:
    """The shop turned tracking off, or the browser asks not to be tracked."""
    if not settings.interaction_tracking:
        return True
    headers = request.headers
    return headers.get("sec-gpc", "").strip() == "1" or headers.get("dnt", "").strip() == "1"


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is over ``limit`` bytes (declared or counted)."""
    too_large = ApiError(413, "body_too_large", f"a beacon is at most {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise refused("too_large", too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise refused("too_large", too_large)
    return bytes(body)


def parse(raw: bytes, content_type: str) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise refused(
            "media_type",
            ApiError(
                415,
                "unsupported_media_type",
                f"send the beacon as JSON (application/json or text/plain), not {media}",
            ),
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise refused(
            "not_json", ApiError(400, "invalid_json", f"the beacon is not UTF-8 JSON ({exc})")
        ) from None


def validated(data: Any, max_events: int) -> BeaconIn:
    """The beacon, or a 422 naming each field (the shared shape, as for any JSON body)."""
    try:
        beacon = BeaconIn.model_validate(data)
    except ValidationError as exc:
        BEACONS_REFUSED.labels("invalid").inc()
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    if len(beacon.events) > max_events:
        message = f"at most {max_events} events per beacon, not {len(beacon.events)}"
        raise invalid([FieldError(field="events", message=message, type="too_long")])
    return beacon


def invalid(found: list[FieldError]) -> ApiError:
    return refused(
        "invalid",
        ApiError(422, "validation_failed", f"invalid beacon: {found[0].message}", fields=found),
    )


def visitor_limited(request: Request, visitor_id: str) -> None:
    limiter: RateLimiter = request.app.state.beacon_limiter
    wait = limiter.acquire(visitor_id)
    if wait > 0:
        raise refused(
            "rate_limited",
            ApiError(
                429,
                "rate_limited",
                "too many beacons from this visitor; batch the events and slow down",
                headers={"Retry-After": limiter.retry_after_header(wait)},
            ),
        )


async def experiments_of(
    registry: ExperimentRegistry, events: list[BeaconEvent]
) -> dict[str, ExperimentState]:
    """The beacon's experiments the registry knows (after letting the view catch up with the
    topic when some are unknown: another process may have created one a moment ago)."""
    wanted = {e.experiment_id for e in events if e.experiment_id is not None}
    if any(registry.get(x) is None for x in wanted):
        try:
            await registry.view.sync(SYNC_WAIT_S)
        except ViewUnavailable as exc:
            raise ApiError(
                503,
                "broker_unavailable",
                "the event broker does not answer, so the experiments cannot be checked; "
                "nothing was published: retry",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from exc
    return {x: s for x in wanted if (s := registry.get(x)) is not None}


async def categories_of(
    request: Request, experiments: dict[str, ExperimentState], events: list[BeaconEvent]
) -> dict[str, str | None]:
    """product -> category (``pcat``, as the processor filed it) for the events whose active
    experiment is scoped by category; one round trip."""
    products = sorted(
        {
            e.product_id
            for e in events
            if e.experiment_id in experiments
            and experiments[e.experiment_id].fields.category is not None
        }
    )
    if not products:
        return {}
    # categories are in the referrals shard (contracts/layout.py): one slot, so one MGET also on
    # a cluster
    keys = request.app.state.reader.layout.referrals_keys
    values = await request.app.state.redis.mget([keys.product_category(p) for p in products])
    return dict(zip(products, values, strict=True))


def problems(
    beacon: BeaconIn,
    experiments: dict[str, ExperimentState],
    categories: dict[str, str | None],
    now: datetime,
) -> list[FieldError]:
    found: list[FieldError] = []
    for i, e in enumerate(beacon.events):
        here = f"events[{i}]"
        if e.at > now + MAX_AHEAD:
            found.append(FieldError(field=f"{here}.at", message="in the future", type="future"))
        elif e.at < now - MAX_AGE:
            found.append(FieldError(field=f"{here}.at", message="over 7 days old", type="too_old"))
        if e.experiment_id is None:
            if e.variant is not None:
                message = "a variant needs its experiment_id"
                found.append(FieldError(field=f"{here}.variant", message=message, type="orphan"))
            continue
        state = experiments.get(e.experiment_id)
        if state is None:
            message = f"unknown experiment {e.experiment_id}"
            found.append(FieldError(field=f"{here}.experiment_id", message=message, type="unknown"))
            continue
        status = state.status(now)
        if status == "stopped":
            continue  # published without it: see the module docstring
        if status == "scheduled":
            message = f"experiment {e.experiment_id} starts at {state.fields.starts_at.isoformat()}"
            found.append(
                FieldError(field=f"{here}.experiment_id", message=message, type="not_started")
            )
            continue
        if not state.covers(e.product_id, categories.get(e.product_id)):
            message = f"product {e.product_id} is not in experiment {e.experiment_id}"
            found.append(FieldError(field=f"{here}.product_id", message=message, type="scope"))
        expected = assign(state.fields, beacon.visitor_id).name
        if e.variant != expected:
            message = f"the visitor's variant in {e.experiment_id} is {expected}"
            found.append(FieldError(field=f"{here}.variant", message=message, type="assignment"))
    return found


def interaction(
    beacon: BeaconIn,
    e: BeaconEvent,
    experiments: dict[str, ExperimentState],
    viewer_id: str | None,
) -> Event:
    state = None if e.experiment_id is None else experiments[e.experiment_id]
    running = state is not None and state.stopped_at is None
    payload = BadgeInteractionPayload(
        visitor_id=beacon.visitor_id,
        viewer_id=viewer_id,
        product_id=e.product_id,
        experiment_id=e.experiment_id if running else None,
        variant=e.variant if running else None,
        attribution_window_s=(
            state.window_s()
            if running and state is not None
            else DEFAULT_ATTRIBUTION_WINDOW_H * 3600
        ),
    )
    return EVENT_TYPES[e.kind].create(
        payload,
        producer=SERVICE,
        event_id=event_id(beacon.visitor_id, e.kind, e.product_id, e.experiment_id, e.at),
        occurred_at=e.at,
    )


@router.post(
    "/v1/beacons",
    status_code=202,
    response_model=BeaconAccepted,
    summary="Report badge impressions, clicks and dismissals (public; navigator.sendBeacon)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": BeaconIn.model_json_schema()}
                for media in ("application/json", "text/plain")
            },
        }
    },
    responses={
        204: {"description": "tracking is off (Sec-GPC, DNT or the shop's switch): nothing kept"},
        401: {
            "model": ErrorBody,
            "description": "the viewer token is expired, tampered or not one",
        },
        415: {"model": ErrorBody, "description": "not JSON (application/json or text/plain)"},
        429: {"model": ErrorBody, "description": "too many beacons; retry after `Retry-After` s"},
        **ERROR_RESPONSES,
    },
)
async def post_beacon(
    request: Request,
    viewer_token: Annotated[
        str | None,
        Query(description="viewer token (a beacon cannot send an Authorization header)"),
    ] = None,
) -> Response:
    settings: NotifierSettings = request.app.state.settings
    if tracking_refused(request, settings):
        BEACONS_REFUSED.labels("privacy").inc()
        return Response(status_code=204)
    try:
        await rate_limit(request)
    except ApiError as exc:
        raise refused("rate_limited", exc) from None
    raw = await read_body(request, settings.beacon_max_bytes)
    beacon = validated(
        parse(raw, request.headers.get("content-type", "")), settings.beacon_max_events
    )
    visitor_limited(request, beacon.visitor_id)
    try:
        viewer_id = viewer_from(request, viewer_token)
    except ApiError as exc:
        raise refused("invalid_token", exc) from None
    registry: ExperimentRegistry = request.app.state.experiments
    experiments = await experiments_of(registry, beacon.events)
    categories = await categories_of(request, experiments, beacon.events)
    if found := problems(beacon, experiments, categories, datetime.now(UTC)):
        raise invalid(found)
    events = [interaction(beacon, e, experiments, viewer_id) for e in beacon.events]
    await publish_all(request.app.state.publisher, events)
    for e in beacon.events:
        BEACON_EVENTS.labels(e.kind).inc()
    return JSONResponse({"accepted": len(events)}, status_code=202)


async def publish_all(publisher: EventPublisher, events: list[Event]) -> None:
    """Every event published concurrently; returns once the broker acknowledged each, else a
    503 (after every outcome is known, so no delivery is left unobserved)."""
    outcomes = await asyncio.gather(*(publisher.publish(e) for e in events), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if not failed:
        return
    for o in failed:
        if not isinstance(o, PublishFailed):
            raise o
    BEACONS_REFUSED.labels("broker_unavailable").inc()
    raise ApiError(
        503,
        "broker_unavailable",
        f"the event broker did not acknowledge {len(failed)} of {len(events)} events "
        f"({failed[0]}); some may be recorded: send the same beacon again (event ids are "
        "deterministic, so nothing counts twice)",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
