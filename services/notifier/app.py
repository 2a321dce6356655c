"""The notifier: the storefront-facing edge. Serves social proof and pushes changes live.

- ``GET /v1/proof/products/{product_id}``: a product's counters; an unknown product answers zeros
  (never 404) so a storefront can render any page.
- ``GET /v1/proof/stream?products=p1,p2``: Server-Sent Events; ``event: proof`` messages whose
  data is the same JSON as the proof endpoint, first the current state, then every change.

Run: ``socialproof serve notifier`` (port ``SOCIALPROOF_NOTIFIER_PORT``, default 8004).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from pydantic import TypeAdapter, ValidationError
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from contracts.events import Identifier
from services.notifier.hub import Hub
from services.notifier.proof import Proof, ProofReader, to_json
from socialproof import redis as redis_client
from socialproof.http import ApiError, FieldError, create_service_app
from socialproof.kafka import BrokerProbe
from socialproof.settings import NotifierSettings

SERVICE = "notifier"
MAX_STREAM_PRODUCTS = 100
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
_ids = TypeAdapter(list[Identifier])


def get_reader(request: Request) -> ProofReader:
    return request.app.state.reader


def get_hub(request: Request) -> Hub:
    return request.app.state.hub


Reader = Annotated[ProofReader, Depends(get_reader)]
LiveHub = Annotated[Hub, Depends(get_hub)]


def parse_product_list(raw: str, field: str = "products") -> list[str]:
    """'p1,p2' -> ['p1', 'p2'], deduplicated in order; 422 naming the field when invalid."""
    ids = list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if not ids:
        problem = "give at least one product id"
    elif len(ids) > MAX_STREAM_PRODUCTS:
        problem = f"at most {MAX_STREAM_PRODUCTS} product ids"
    else:
        try:
            return _ids.validate_python(ids)
        except ValidationError as exc:
            bad = exc.errors()[0]
            problem = f"product id #{bad['loc'][0]} is invalid: {bad['msg']}"
    raise ApiError(
        422,
        "validation_failed",
        f"invalid request: {field}: {problem}",
        fields=[FieldError(field=field, message=problem, type="value_error")],
    )


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = redis_client.connect(settings)
        reader = ProofReader(redis, settings.redis_namespace)

        async def read_states(product_ids: list[str]) -> list[dict]:
            return [to_json(p) for p in await reader.read_many(product_ids)]

        # Pub/sub holds its connection for ever: give it its own client with no read timeout.
        pubsub_redis = redis_client.connect(settings, socket_timeout=None)
        hub = Hub(pubsub_redis, reader.keys.changes_channel, read_states)
        app.state.redis, app.state.reader, app.state.hub = redis, reader, hub
        app.state.broker = BrokerProbe(settings)
        hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await pubsub_redis.aclose()
            await redis.aclose()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description="Social proof for storefronts: read API and live push.",
        lifespan=lifespan,
        readiness=lambda app: {
            "kafka": app.state.broker.check,
            "redis": app.state.redis.ping,
        },
    )

    @app.get(
        "/v1/proof/products/{product_id}",
        response_model=Proof,
        response_model_by_alias=True,
        tags=["proof"],
        summary="A product's social proof (zeros for a product nobody bought yet)",
    )
    async def product_proof(
        product_id: Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)],
        reader: Reader,
    ) -> dict:
        return to_json(await reader.read(product_id))

    @app.get(
        "/v1/proof/stream",
        tags=["proof"],
        summary="Server-Sent Events: `event: proof` with the proof JSON, now and on every change",
        response_class=EventSourceResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def proof_stream(
        request: Request,
        hub: LiveHub,
        reader: Reader,
        products: Annotated[str, Query(description="comma-separated product ids (1..100)")],
    ) -> EventSourceResponse:
        ids = parse_product_list(products)
        box = hub.subscribe(frozenset(ids))
        sequence = itertools.count(1)
        heartbeat = settings.sse_heartbeat_s

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                # Subscribed before reading, so no change between the two can be missed.
                for proof in await reader.read_many(ids):
                    yield _sse(to_json(proof), next(sequence))
                while not await request.is_disconnected():
                    for state in (await box.take(timeout=heartbeat)).values():
                        yield _sse(state, next(sequence))
            finally:
                hub.unsubscribe(box)

        return EventSourceResponse(events(), ping=heartbeat, send_timeout=30)

    return app


def _sse(state: dict, seq: int) -> ServerSentEvent:
    return ServerSentEvent(data=orjson.dumps(state).decode(), event="proof", id=str(seq))
