"""The read API's fast path: cache hits of ``GET /v1/proof/products/{id}`` answered straight from
uvicorn's HTTP protocol, before any ASGI machinery.

Why (measured on the 2-core machine, ``wrk -t1 -c64``): an empty ASGI app under uvicorn
(uvloop + httptools) answers ~22,000-26,000 req/s with p99 5.8-6.5 ms, so no ASGI answer, however
lean, meets the read API's target (p99 under 5 ms at concurrency 64); most of that cost is
uvicorn's per-request task, ASGI messages and header handling. The same answer written from the
protocol's parser callback runs at ~100,000 req/s. With the cache (:mod:`services.notifier.cache`)
almost every product-page read is a hit, so hits take this path and everything else — misses,
bad or expired tokens (401), rate-limited clients (429), query strings, bodies, proxies, other
routes — falls through to FastAPI unchanged, which answers and fills the cache.

An answer from here is byte for byte the one the FastAPI route would send (tests compare them):
uvicorn's ``date`` and ``server`` headers, ``etag``, ``cache-control``, ``vary``, the CORS
headers of the app's CORS settings, ``304`` for a matching ``If-None-Match``. It verifies the
viewer token (signature and expiry) on every request, takes a rate-limit token only when it
answers, and counts the request in the same Prometheus metrics.

Used by ``socialproof serve notifier``: the app names :func:`protocol_class` as uvicorn's HTTP
protocol (``app.state.http_protocol``, read by :mod:`socialproof.serve`). Under any other server
(or without httptools) nothing changes but speed.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from services.notifier.cache import ProofCache
from services.notifier.ratelimit import RateLimiter
from services.notifier.tokens import InvalidViewerToken, ViewerTokens
from socialproof.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger(__name__)

ROUTE = "/v1/proof/products/{product_id}"
#: the route's path with a valid product id (the route's own pattern and length), nothing else
_PATH = re.compile(rb"/v1/proof/products/([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})")
_STATUS = {200: b"HTTP/1.1 200 OK\r\n", 304: b"HTTP/1.1 304 Not Modified\r\n"}
_VARY = b"vary: Authorization, Origin\r\n"
#: request headers that change what the ASGI stack would do: such requests fall through
_FALL_THROUGH = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"x-forwarded-for", b"x-forwarded-proto"}
)


@dataclass(frozen=True)
class Cors:
    """The app's CORS settings (as given to Starlette's CORSMiddleware: GET only, no
    credentials), and the headers that middleware adds to a simple response."""

    allow_origins: tuple[str, ...]
    expose_headers: tuple[str, ...]

    @property
    def allow_all(self) -> bool:
        return "*" in self.allow_origins

    def headers(self, origin: bytes | None) -> bytes:
        """Lines appended after the route's own headers (``vary`` is always the same here)."""
        if origin is None:
            return b""
        lines = b""
        if self.allow_all:
            lines += b"access-control-allow-origin: *\r\n"
        if self.expose_headers:
            lines += b"access-control-expose-headers: %s\r\n" % ", ".join(
                self.expose_headers
            ).encode("latin-1")
        if not self.allow_all and origin.decode("latin-1") in self.allow_origins:
            lines += b"access-control-allow-origin: %s\r\n" % origin
        return lines


def etags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header, for weak comparison (RFC 9110 §8.8.3.2:
    ``W/"x"`` matches ``"x"``)."""
    tags = {t.strip() for t in header.split(",") if t.strip()}
    return tags | {t if t.startswith("W/") else f"W/{t}" for t in tags}


class FastPath:
    """Answers cache hits of the single-product read; None means "let FastAPI answer"."""

    def __init__(
        self,
        cache: ProofCache,
        tokens: ViewerTokens,
        limiter: RateLimiter,
        cors: Cors,
        service: str,
    ) -> None:
        self.cache, self.tokens, self.limiter, self.cors = cache, tokens, limiter, cors
        self.service = service
        self._counted: dict[int, Any] = {}  # status -> counter, made when first needed
        self._latency = HTTP_LATENCY.labels(service, "GET", ROUTE)
        self._defaults: tuple[Any, bytes] = (None, b"")

    def answer(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        client_host: str | None,
        default_headers: list[tuple[bytes, bytes]],
    ) -> bytes | None:
        """The whole HTTP response for a cache hit, or None. ``headers`` have lower-case names
        (as uvicorn gives them); ``default_headers`` are uvicorn's (date, server)."""
        started = time.perf_counter()
        if method != b"GET" or not self.cache.enabled:
            return None
        match = _PATH.fullmatch(target)
        if match is None:
            return None
        authorization = if_none_match = origin = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"if-none-match":
                if_none_match = value if if_none_match is None else if_none_match
            elif name == b"origin":
                origin = value if origin is None else origin
            elif name in _FALL_THROUGH:
                return None
        viewer = None
        if authorization is not None:
            scheme, _, token = authorization.partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and token:
                try:
                    viewer = self.tokens.verify(token.decode("latin-1")).viewer_id
                except InvalidViewerToken:
                    return None  # FastAPI answers the 401
        product = match.group(1).decode("ascii")
        rendered = self.cache.get(product, viewer)
        if rendered is None:
            return None
        if self.limiter.acquire(client_host or "unknown") > 0:
            return None  # FastAPI answers the 429 (a refused take costs no token)
        status = 200
        if if_none_match is not None and rendered.etag in etags(if_none_match.decode("latin-1")):
            status = 304
        parts = [_STATUS[status], self._default_lines(default_headers), rendered.head, _VARY]
        if status == 200:
            parts.append(rendered.length)
        parts.append(self.cors.headers(origin))
        parts.append(b"\r\n")
        if status == 200:
            parts.append(rendered.body)
        counter = self._counted.get(status)
        if counter is None:
            counter = self._counted[status] = HTTP_REQUESTS.labels(
                self.service, "GET", ROUTE, str(status)
            )
        counter.inc()
        self._latency.observe(time.perf_counter() - started)
        return b"".join(parts)

    def _default_lines(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        # uvicorn replaces the list once a second (the date): encode it once per list
        seen, lines = self._defaults
        if seen is not default_headers:
            lines = b"".join(b"%s: %s\r\n" % (name, value) for name, value in default_headers)
            self._defaults = (default_headers, lines)
        return lines


class _Answered:
    """Stands in for uvicorn's request cycle after a fast answer: finished, nothing to wake."""

    response_complete = True
    keep_alive = True
    disconnected = False

    class message_event:  # noqa: N801 - the attribute uvicorn reads
        @staticmethod
        def set() -> None:
            pass


_ANSWERED = _Answered()


def protocol_class(app: Any) -> type | str:
    """uvicorn's httptools protocol, answering ``app.state.fast_path`` hits before the ASGI app
    runs; ``"auto"`` (uvicorn's default) when httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it
        return "auto"

    class FastPathProtocol(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            fast: FastPath | None = getattr(app.state, "fast_path", None)
            if (
                fast is None
                # in order only: nothing may be answered before an earlier request on this
                # connection, and upgrades, HTTP/1.0 and `Connection: close` go the usual way
                or not (self.cycle is None or self.cycle.response_complete)
                or self.pipeline
                or self.parser.should_upgrade()
                or self.parser.get_http_version() != "1.1"
                or not self.parser.should_keep_alive()
                or self.expect_100_continue
                or self.access_log
                or self.root_path
                or self.limit_concurrency is not None
                or self.flow.write_paused
            ):
                return super().on_headers_complete()
            try:
                response = fast.answer(
                    self.parser.get_method(),
                    self.url,
                    self.headers,
                    self.client[0] if self.client else None,
                    self.server_state.default_headers,
                )
            except Exception:  # never fail a request here: FastAPI answers it instead
                log.exception("the read API fast path failed; answering through FastAPI")
                response = None
            if response is None:
                return super().on_headers_complete()
            self.transport.write(response)
            self.cycle = _ANSWERED  # type: ignore[assignment]
            self.on_response_complete()  # counts it, arms the keep-alive timer

    return FastPathProtocol
