"""A/B experiments on badges (issue #18): the shop defines and stops them, the widget asks what a
visitor sees. The definitions are :mod:`services.notifier.experiments` (a view of
``storefront.experiments``); the results are :mod:`.insights`.

With the service token (the shop's backend):

- ``POST /v1/experiments``: create (201, with ``status``). The id must be new (409 otherwise;
  the same definition sent again answers 200, unchanged, so a retried create is harmless). 422
  names the field: ``split`` (one share per variant, summing to 100), ``variants[i].name``
  (twice), ``products``/``category`` (exactly one), ``variants[i].elements`` (on a variant with
  ``badge: none``)…
- ``GET /v1/experiments`` (``?status=``, paged by id), ``GET /v1/experiments/{id}``.
- ``POST /v1/experiments/{id}/stop``: stop for good (idempotent); earlier impressions still
  count for purchases within their window.

Public (rate limited per client, like the read API):

- ``GET /v1/experiments/{id}/assignment?visitor_id=V``: the visitor's variant and what it shows.
- ``GET /v1/products/{id}/experiment?visitor_id=V``: the same for the product's active
  experiment (what the widget asks), or 204 when none covers the product. A category experiment
  covers the products the stream processor filed under that category (``pcat`` in Redis).

Each write publishes to ``storefront.experiments`` and answers once the broker acknowledged it
*and* this process's view applied it, so a read right after it sees it; another notifier process
sees it once its view reads it, and a lookup that finds nothing there first lets its view reach
the topic's end (``sync``), so a just-created experiment is never called unknown.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from contracts.events import (
    ExperimentFields,
    ExperimentStarted,
    ExperimentStopped,
    ExperimentStoppedPayload,
    VisitorId,
)
from services.notifier.api.deps import RateLimited
from services.notifier.api.proof import ID_PATTERN
from services.notifier.experiment_schemas import Assignment, Experiment, ExperimentCreate
from services.notifier.experiments import ExperimentRegistry, ExperimentState, Status
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    RETRY_AFTER_S,
    ApiError,
    ErrorBody,
    FieldError,
    ServiceAuth,
)
from socialproof.kafka import EventPublisher
from socialproof.paging import Cursor, Limit, Page, paginate
from socialproof.topicview import ViewUnavailable

SERVICE = "notifier"
log = logging.getLogger("socialproof.notifier")
router = APIRouter(tags=["experiments"])

#: how long a lookup waits for the view to reach the topic's end before calling an id unknown
SYNC_WAIT_S = 2.0

ExperimentId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="experiment id")
]
Visitor = Annotated[VisitorId, Query(description="the widget's visitor id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such experiment"}
}
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "too many requests; retry after `Retry-After` s"}
}
#: a visitor's assignment never changes; the product's experiment may start or stop
ASSIGNMENT_CACHE = "private, max-age=60"


def registry_of(request: Request) -> ExperimentRegistry:
    return request.app.state.experiments


def answer(state: ExperimentState, status_code: int = 200) -> JSONResponse:
    return JSONResponse(Experiment.of(state).model_dump(mode="json"), status_code=status_code)


async def synced(registry: ExperimentRegistry) -> None:
    """Let the view apply everything written so far (503 when the broker does not answer)."""
    try:
        await registry.view.sync(SYNC_WAIT_S)
    except ViewUnavailable as exc:
        raise ApiError(
            503,
            "broker_unavailable",
            "the event broker does not answer, so the experiment cannot be looked up; retry",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc


async def lookup(registry: ExperimentRegistry, experiment_id: str) -> ExperimentState | None:
    """The experiment, also one another notifier process created a moment ago."""
    found = registry.get(experiment_id)
    if found is None:
        await synced(registry)
        found = registry.get(experiment_id)
    return found


async def existing(registry: ExperimentRegistry, experiment_id: str) -> ExperimentState:
    found = await lookup(registry, experiment_id)
    if found is None:
        raise ApiError(404, "not_found", f"no experiment {experiment_id}")
    return found


def same_definition(
    current: ExperimentFields, body: ExperimentCreate, asked: ExperimentFields
) -> bool:
    """A create that repeats ``current`` (``starts_at`` compared only when the body gave it)."""
    if body.starts_at is None:
        asked = asked.model_copy(update={"starts_at": current.starts_at})
    return current == asked


def write_lock(request: Request) -> asyncio.Lock:
    state = request.app.state
    if getattr(state, "experiments_lock", None) is None:
        state.experiments_lock = asyncio.Lock()
    return state.experiments_lock


@router.post(
    "/v1/experiments",
    status_code=201,
    response_model=Experiment,
    summary="Create an A/B experiment on badges for products or a category",
    responses={
        200: {"model": Experiment, "description": "the same experiment already existed"},
        409: {"model": ErrorBody, "description": "another experiment has this id"},
        **AUTH_RESPONSES,
        **ERROR_RESPONSES,
    },
)
async def create_experiment(
    body: ExperimentCreate, _: ServiceAuth, request: Request
) -> JSONResponse:
    if found := body.problems():
        raise ApiError(
            422, "validation_failed", f"invalid experiment: {found[0].message}", fields=found
        )
    registry = registry_of(request)
    experiment_id = body.id or f"exp-{uuid.uuid4().hex}"
    asked = body.fields(experiment_id, datetime.now(UTC))
    async with write_lock(request):
        await synced(registry)  # the id may have been taken by another process a moment ago
        current = registry.get(experiment_id)
        if current is not None:
            if same_definition(current.fields, body, asked):  # a retried create
                return answer(current)
            raise ApiError(
                409,
                "experiment_exists",
                f"experiment {experiment_id} exists; experiments never change: create a new one",
                fields=[FieldError(field="id", message="taken", type="experiment_exists")],
            )
        publisher: EventPublisher = request.app.state.publisher
        event = ExperimentStarted.create(asked, producer=SERVICE, occurred_at=datetime.now(UTC))
        delivered = await publisher.publish(event)
        log.info(
            "experiment started",
            extra={"event_id": str(event.event_id), "experiment_id": experiment_id},
        )
        await registry.view.wait_delivered(delivered)
    current = registry.get(experiment_id)
    if current is not None and current.started_event_id not in (None, event.event_id):
        # another process's create of the same id reached the log first: that one stands
        raise ApiError(
            409,
            "experiment_exists",
            f"experiment {experiment_id} was created by another request at the same time",
            fields=[FieldError(field="id", message="taken", type="experiment_exists")],
        )
    started = current or ExperimentState(asked, event.occurred_at, None, event.event_id)
    return answer(started, 201)


@router.get(
    "/v1/experiments",
    response_model=Page[Experiment],
    summary="List experiments by id, page by page; filter by status",
    responses=AUTH_RESPONSES,
)
async def list_experiments(
    _: ServiceAuth,
    request: Request,
    limit: Limit = 20,
    cursor: Cursor = None,
    status: Annotated[Status | None, Query(description="only experiments in this status")] = None,
) -> Page[Experiment]:
    now = datetime.now(UTC)
    matching = [s for s in registry_of(request).all() if status is None or s.status(now) == status]
    page, next_cursor = paginate(matching, lambda s: s.experiment_id, cursor, limit)
    return Page[Experiment](items=[Experiment.of(s, now) for s in page], next_cursor=next_cursor)


@router.get(
    "/v1/experiments/{experiment_id}",
    response_model=Experiment,
    summary="Read an experiment (also once stopped)",
    responses={**NOT_FOUND, **AUTH_RESPONSES},
)
async def get_experiment(
    experiment_id: ExperimentId, _: ServiceAuth, request: Request
) -> JSONResponse:
    return answer(await existing(registry_of(request), experiment_id))


@router.post(
    "/v1/experiments/{experiment_id}/stop",
    response_model=Experiment,
    summary="Stop an experiment for good (it stays readable, with status stopped); idempotent",
    responses={**NOT_FOUND, **AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
)
async def stop_experiment(
    experiment_id: ExperimentId, _: ServiceAuth, request: Request
) -> JSONResponse:
    registry = registry_of(request)
    async with write_lock(request):
        current = await existing(registry, experiment_id)
        if current.stopped_at is None:  # stopping a stopped experiment publishes nothing
            publisher: EventPublisher = request.app.state.publisher
            event = ExperimentStopped.create(
                ExperimentStoppedPayload(experiment_id=experiment_id), producer=SERVICE
            )
            delivered = await publisher.publish(event)
            log.info(
                "experiment stopped",
                extra={"event_id": str(event.event_id), "experiment_id": experiment_id},
            )
            await registry.view.wait_delivered(delivered)
    return answer(await existing(registry, experiment_id))


@router.get(
    "/v1/experiments/{experiment_id}/assignment",
    response_model=Assignment,
    summary="The variant a visitor sees in an experiment (public)",
    responses={**NOT_FOUND, **TOO_MANY, 422: ERROR_RESPONSES[422]},
)
async def get_assignment(
    experiment_id: ExperimentId, visitor_id: Visitor, request: Request, _: RateLimited
) -> JSONResponse:
    state = await existing(registry_of(request), experiment_id)
    body = Assignment.of(state, ExperimentRegistry.assign(state, visitor_id))
    return JSONResponse(body.model_dump(mode="json"), headers={"Cache-Control": ASSIGNMENT_CACHE})


@router.get(
    "/v1/products/{product_id}/experiment",
    response_model=Assignment,
    summary="The product's active experiment and the visitor's variant in it (public; the "
    "widget asks)",
    responses={
        204: {"description": "no active experiment covers the product: show the usual badge"},
        **TOO_MANY,
        422: ERROR_RESPONSES[422],
        503: ERROR_RESPONSES[503],
    },
)
async def get_product_experiment(
    product_id: Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)],
    visitor_id: Visitor,
    request: Request,
    _: RateLimited,
) -> Response:
    registry = registry_of(request)
    category = await product_category(request, registry, product_id)
    state = registry.active_for(product_id, category)
    no_store = {"Cache-Control": "private, no-cache"}
    if state is None:
        return Response(status_code=204, headers=no_store)
    body = Assignment.of(state, ExperimentRegistry.assign(state, visitor_id))
    return JSONResponse(body.model_dump(mode="json"), headers=no_store)


async def product_category(
    request: Request, registry: ExperimentRegistry, product_id: str
) -> str | None:
    """The product's category as the stream processor filed it, read only when an active
    experiment is scoped by category."""
    if not registry.needs_category(product_id):
        return None
    # follows the active namespace after a rebuild; categories are in the referrals shard
    keys = request.app.state.reader.layout.referrals_keys
    return await request.app.state.redis.get(keys.product_category(product_id))
