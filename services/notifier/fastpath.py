"""The read API's fast path: cache hits of ``GET /v1/proof/products/{id}`` answered by an ASGI
app in front of the notifier's FastAPI app, before its middleware, routing and dependencies.

Why, measured on the 2-core machine with the read_api scenario's load (``wrk -t1 -c64``, closed
loop, a viewer token, 100 cached answers; A/B alternating in one run, medians; other sessions'
work on the machine, load average given):

- a cache hit through FastAPI (route, dependencies, middleware) costs far more than the hit
  itself: the read API topped out near 1,200 req/s before the cache, so hits must skip it;
- under uvicorn (uvloop + httptools), no ASGI answer meets the target: with this module's answer
  as the outermost ASGI app, 15,800 req/s, p99 7.4 ms (13,700 / 7.0 ms in a quieter run), and
  even an empty ASGI app only 25,000 req/s, p99 4.6 ms (load 0.4-1.6): uvicorn's per-request
  task, ASGI messages and header handling in Python. Answering from a subclass of its HTTP
  protocol (what this module did until issue #20) gave 27,300 req/s, p99 5.6 ms in the same
  run, but that class is private to uvicorn;
- under granian (HTTP in Rust on a thread of its own; Python runs only the ASGI app), the same
  ASGI answer gave 33,600 req/s, p99 5.0 ms (39,200 / 3.9 ms in the quieter run), 1.2-1.8x the
  private protocol's rate; granian's own RSGI interface (answers without ASGI messages) was
  within the noise of it (35,500 / 4.5 ms), and RSGI would need a bridge to the FastAPI app for
  everything else, so the notifier is served through ASGI;
- in front of the app, not as one of its middleware: FastAPI's and Starlette's own layers around
  the middleware stack (body limit, exception telemetry, the server-error middleware, each with
  its wrapped ``send``) cut the rate to 0.55-0.65x;
- a page's reads all carry the same viewer token: a token whose signature was verified is
  remembered (the same bytes verify the same way; the expiry is still checked every time), which
  was 1.0-1.3x the rate (HMAC was a fifth of the Python time per hit);
- the whole notifier as served (``socialproof serve notifier``, this module under granian
  against the private uvicorn protocol): 2.3x the rate at load 7-9 (7,700 against 3,300 req/s,
  p99 42 against 182 ms), 1.13x at load 6-7 (13,500 against 12,000 req/s, p50 3.4 against
  4.6 ms, p99 32 ms both). ``python -m bench --only read_api`` at load 5-10: 10,500 req/s, p99
  56 ms, the notifier given 0.59 of a core: on this shared machine the target (p99 under 5 ms)
  is bound by CPU the notifier does not get, not by the Python time per hit (a profile under
  load: the worker's Python thread mostly waiting in the event loop).

With the cache (:mod:`services.notifier.cache`) almost every product-page read is a hit, so hits
take this path and everything else — misses, bad or expired tokens (401), rate-limited clients
(429), query strings, bodies, other routes, WebSocket and lifespan — falls through to FastAPI
unchanged, which answers and fills the cache.

An answer from here is byte for byte the one the FastAPI route would send (tests compare them,
through the server as deployed): ``etag``, ``cache-control``, ``vary``, ``content-length`` and
``content-type`` in the route's order, the CORS headers of the app's CORS settings as Starlette's
middleware adds them, ``304`` for a matching ``If-None-Match``; the server adds its own ``server``
and ``date`` to both. It accepts only a valid viewer token (signature once per token, expiry every time), takes
a rate-limit token only when it answers, and counts the request in the same Prometheus metrics
(and in ``socialproof_notifier_fast_path_answers_total``).

Only public interfaces: the notifier names :class:`FastPathApp` as the ASGI app to serve
(``app.state.asgi_app``, read by :mod:`socialproof.serve`, which serves the notifier with
granian); it works under any ASGI server, only slower.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from services.notifier.cache import ProofCache
from services.notifier.ratelimit import RateLimiter
from services.notifier.tokens import (
    MAX_REMEMBERED,
    InvalidViewerToken,
    ViewerToken,
    ViewerTokens,
)
from socialproof.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger(__name__)

ROUTE = "/v1/proof/products/{product_id}"
#: the route's path with a valid product id (the route's own pattern and length), nothing else
_PATH = re.compile(r"/v1/proof/products/([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})")
#: Starlette's CORS middleware appends Origin to the route's ``Vary: Authorization``
_VARY = (b"vary", b"Authorization, Origin")
#: request headers that change what the ASGI stack would do: such requests fall through
_FALL_THROUGH = frozenset({b"content-length", b"transfer-encoding", b"expect"})

FAST_ANSWERS = Counter(
    "socialproof_notifier_fast_path_answers_total",
    "Single-product reads answered from the cache by the fast path (also counted in "
    "socialproof_http_requests_total)",
)

#: what :meth:`FastPath.answer` gives: status, response headers, body
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True)
class Cors:
    """The app's CORS settings (as given to Starlette's CORSMiddleware: GET only, no
    credentials), and the headers that middleware adds to a simple response."""

    allow_origins: tuple[str, ...]
    expose_headers: tuple[str, ...]

    @property
    def allow_all(self) -> bool:
        return "*" in self.allow_origins

    def headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """Headers appended after the route's own (``vary`` is always the same here)."""
        if origin is None:
            return []
        lines = []
        if self.allow_all:
            lines.append((b"access-control-allow-origin", b"*"))
        if self.expose_headers:
            exposed = ", ".join(self.expose_headers).encode("latin-1")
            lines.append((b"access-control-expose-headers", exposed))
        if not self.allow_all and origin.decode("latin-1") in self.allow_origins:
            lines.append((b"access-control-allow-origin", origin))
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache, self.tokens, self.limiter, self.cors = cache, tokens, limiter, cors
        self.service = service
        self.clock = clock  # wall clock, for token expiry
        self._counted: dict[int, Any] = {}  # status -> counter, made when first needed
        self._latency = HTTP_LATENCY.labels(service, "GET", ROUTE)
        #: tokens whose signature was verified, with their claims: a page's reads all carry the
        #: same token, and the same bytes verify the same way (the expiry is checked every time)
        self._verified: dict[bytes, ViewerToken] = {}

    def answer(self, scope: Scope) -> Answer | None:
        """The response to an ASGI ``http`` request if it is a cache hit, else None."""
        started = time.perf_counter()
        if (
            scope["method"] != "GET"
            or scope["query_string"]
            or scope.get("root_path")
            or not self.cache.enabled
        ):
            return None
        match = _PATH.fullmatch(scope["path"])  # what FastAPI routes on (percent-decoded)
        if match is None:
            return None
        authorization = if_none_match = origin = None
        for name, value in scope["headers"]:  # lower-case names (ASGI)
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
                claims = self._verified.get(token)
                if claims is None:
                    try:
                        claims = self.tokens.verify(token.decode("latin-1"))
                    except InvalidViewerToken:
                        return None  # FastAPI answers the 401
                    if len(self._verified) >= MAX_REMEMBERED:
                        self._verified.clear()
                    self._verified[token] = claims
                if claims.expires_at <= self.clock():
                    return None  # expired: FastAPI answers the 401
                viewer = claims.viewer_id
        rendered = self.cache.get(match.group(1), viewer)
        if rendered is None:
            return None
        client = scope.get("client")
        if self.limiter.acquire(client[0] if client else "unknown") > 0:
            return None  # FastAPI answers the 429 (a refused take costs no token)
        if if_none_match is not None and rendered.etag in etags(if_none_match.decode("latin-1")):
            status, headers, body = 304, [*rendered.head, _VARY], b""
        else:
            status, headers, body = 200, [*rendered.head, _VARY, *rendered.length], rendered.body
        if origin is not None:
            headers += self.cors.headers(origin)
        counter = self._counted.get(status)
        if counter is None:
            counter = self._counted[status] = HTTP_REQUESTS.labels(
                self.service, "GET", ROUTE, str(status)
            )
        counter.inc()
        FAST_ANSWERS.inc()
        self._latency.observe(time.perf_counter() - started)
        return status, headers, body


class FastPathApp:
    """The app behind its read API's fast path: an ASGI app that answers the hits of ``fast`` (a
    :class:`FastPath`, set by the app's lifespan; None before and after it) and hands everything
    else to ``app``.

    In front of the app, not one of its middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.fast: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (fast := self.fast) is not None:
            try:
                answer = fast.answer(scope)
            except Exception:  # never fail a request here: FastAPI answers it instead
                log.exception("the read API fast path failed; answering through FastAPI")
                answer = None
            if answer is not None:
                status, headers, body = answer
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
