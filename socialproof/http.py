"""The HTTP scaffolding every service shares, so that all of them behave alike.

``create_service_app`` builds a FastAPI app with:
- ``/healthz`` (the process is alive), ``/readyz`` (each dependency answers; 503 naming the one
  that does not), ``/metrics`` (Prometheus);
- one JSON error shape for every error (:class:`ErrorBody`), validation errors naming the field;
- dependency outages (broker, Redis) answered with 503 and ``Retry-After``, never a 500;
- a request body limit (413) and per-route request metrics.

``ServiceAuth`` is the dependency that write endpoints declare to require the service token.

``standard_lifespan`` gives the services (catalog, orders, social) their broker probe, publisher
and serving store: a :class:`ServingStore`, whose client is one Redis's or a Redis Cluster's,
whichever ``REDIS_URL`` names (detected on first use, so a service starts and answers 503 while
Redis does not answer).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import redis.asyncio as aioredis
import redis.exceptions
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from pydantic import BaseModel, Field
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from socialproof.kafka import PublishFailed
from socialproof.metrics import HTTP_LATENCY, HTTP_REQUESTS
from socialproof.redis import connect, connect_store
from socialproof.settings import Settings

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
RETRY_AFTER_S = 5


class FieldError(BaseModel):
    field: str = Field(description="where the problem is, e.g. lines[0].quantity")
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error socialproof answers has this shape."""

    error: str = Field(description="stable machine-readable code", examples=["validation_failed"])
    message: str = Field(description="what went wrong, for a person")
    fields: list[FieldError] = Field(default_factory=list)


class ApiError(Exception):
    """Raise from handlers for a deliberate error response in the shared shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = dict(headers or {})


def error_response(
    status: int,
    code: str,
    message: str,
    fields: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'lines', 0, 'quantity') -> 'lines[0].quantity'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out or "body"


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body could not be parsed (not UTF-8 JSON)"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "invalid request; `fields` names each problem"},
    503: {"model": ErrorBody, "description": "a dependency is unavailable; retry after the delay"},
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing bearer token"},
    403: {"model": ErrorBody, "description": "wrong token"},
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            FieldError(field=field_path(e["loc"]), message=e["msg"], type=e["type"])
            for e in exc.errors()
        ]
        summary = "; ".join(f"{f.field}: {f.message}" for f in fields[:3])
        return error_response(422, "validation_failed", f"invalid request: {summary}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.exception_handler(PublishFailed)
    async def _broker(_: Request, exc: PublishFailed) -> JSONResponse:
        return error_response(
            503,
            "broker_unavailable",
            f"the event broker did not acknowledge the write in time ({exc.reason}): it is not "
            "accepted, though it may still reach the log; retry with the same Idempotency-Key, "
            "which never records it twice",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis(_: Request, exc: Exception) -> JSONResponse:
        return error_response(
            503,
            "store_unavailable",
            f"the serving store is unavailable ({type(exc).__name__})",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal_error", "an unexpected error occurred")


class BodyLimitMiddleware:
    """Answers 413 for bodies over the limit, by Content-Length or by counting a stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_response(
            413, "body_too_large", f"request body exceeds {self.max_bytes} bytes"
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await too_large(scope, receive, send)
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class MetricsMiddleware:
    """Counts requests and their latency by route template (not raw path)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(self.service, method, template, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, template).observe(time.perf_counter() - start)


def create_service_app(
    *,
    service: str,
    settings: Settings,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    readiness: Callable[[FastAPI], Mapping[str, ReadinessCheck]],
    version: str = "1",
) -> FastAPI:
    """A FastAPI app with the shared behaviour; nothing touches the network until startup."""
    app = FastAPI(
        title=f"socialproof {service}",
        description=description,
        version=version,
        lifespan=lifespan,
        responses={422: ERROR_RESPONSES[422], 503: ERROR_RESPONSES[503]},
    )
    app.state.settings = settings
    app.state.service = service
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, service=service)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Every dependency answers",
        responses={503: {"description": "a dependency does not answer"}},
    )
    async def readyz() -> JSONResponse:
        checks = readiness(app)
        results = await asyncio.gather(
            *(_run_check(check) for check in checks.values()), return_exceptions=False
        )
        report = dict(zip(checks.keys(), results, strict=True))
        ready = all(r == "ok" for r in report.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "service": service, "checks": report},
            status_code=200 if ready else 503,
            headers={} if ready else {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(metrics_payload(), media_type=CONTENT_TYPE_LATEST)

    return app


def metrics_payload() -> bytes:
    """This process's metrics; with several server processes (socialproof.serve), all of
    theirs, summed (prometheus_client's multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


async def _run_check(check: ReadinessCheck, timeout: float = 3.0) -> str:
    try:
        await asyncio.wait_for(check(), timeout)
    except Exception as exc:  # a readiness check reports, it never raises
        return f"failing: {type(exc).__name__}: {exc}"[:300]
    return "ok"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_service_token(request: Request) -> None:
    settings: Settings = request.app.state.settings
    expected = settings.require_service_token()
    token = _bearer(request)
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <service token>`",
            headers={"WWW-Authenticate": 'Bearer realm="socialproof"'},
        )
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "the bearer token is not a valid service token")


#: declare on write endpoints: ``_: ServiceAuth``
ServiceAuth = Annotated[None, Depends(require_service_token)]


async def lifespan_noop(_: FastAPI) -> AsyncIterator[None]:
    yield


StoreClient = aioredis.Redis | AsyncRedisCluster


class ServingStore:
    """The serving store of a service (``app.state.redis``): the client for ``REDIS_URL``, a
    Redis Cluster's (redis-py's ``RedisCluster``) when that URL names a cluster node, else one
    node's (:func:`socialproof.redis.connect_store` tells them apart with one ``INFO cluster``).

    Handlers get it with ``await store.client()``. Telling the kinds apart needs Redis to
    answer, and a service must start and answer 503 while it does not, so nothing is asked at
    start-up: the first ``client()`` asks (one question at a time, shared by the requests
    waiting for it) and the answer is kept for the process's life. While Redis does not answer,
    ``client()`` returns the single-node client :func:`socialproof.redis.connect` always gave:
    a command on it raises ConnectionError (503, as before), and a request that needs no Redis
    (an order without Idempotency-Key or coupon) is served as before; the next call asks again.
    (On a cluster, a node that comes back between that failed question and the request's
    command could answer a key of another node MOVED: a 500 within that instant, then the
    cluster client.)

    Readiness (:meth:`ping`) is a PING through that client: on a cluster redis-py sends it to
    one node, so readiness says the cluster answers; a failed master makes the requests that
    need its keys 503 (after the client's failover retries) without taking every instance of
    the service out of rotation.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: StoreClient | None = None
        self._fallback: aioredis.Redis | None = None
        self._asking: asyncio.Task[StoreClient] | None = None

    @property
    def cluster(self) -> bool | None:
        """Whether it is a Redis Cluster; None until Redis answered."""
        return None if self._client is None else isinstance(self._client, AsyncRedisCluster)

    async def client(self) -> StoreClient:
        if self._client is not None:
            return self._client
        if self._asking is None:
            self._asking = asyncio.create_task(connect_store(self.settings))
        asking = self._asking
        try:
            found = await asyncio.shield(asking)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            if self._asking is asking:  # the first of the waiters: the next call asks again
                self._asking = None
                log.warning("the serving store does not answer", extra={"error": repr(exc)})
            if self._fallback is None:
                self._fallback = connect(self.settings)
            return self._fallback
        if self._client is None:
            self._client = found
        return self._client

    async def ping(self) -> None:
        await (await self.client()).ping()

    async def aclose(self) -> None:
        if self._asking is not None and not self._asking.done():
            self._asking.cancel()
        for client in (self._client, self._fallback):
            if client is not None:
                await client.aclose()


def standard_lifespan(
    settings: Settings, service: str, *, publisher: bool = True
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The resources most services hold for their lifetime, on ``app.state``:
    ``publisher`` (when the service writes events), ``broker`` (readiness probe), ``redis``
    (a :class:`ServingStore`: ``await app.state.redis.client()`` is the client)."""
    from contextlib import asynccontextmanager

    from socialproof.kafka import BrokerProbe, EventPublisher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.publisher = EventPublisher(settings, client_id=service) if publisher else None
        app.state.broker = BrokerProbe(settings)
        app.state.redis = ServingStore(settings)
        try:
            yield
        finally:
            if app.state.publisher is not None:
                app.state.publisher.close()
            await app.state.redis.aclose()

    return lifespan


def standard_readiness(app: FastAPI) -> dict[str, ReadinessCheck]:
    """Kafka and Redis both answer (for apps using :func:`standard_lifespan`)."""
    return {"kafka": app.state.broker.check, "redis": app.state.redis.ping}
