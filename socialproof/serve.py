"""Runs one HTTP service with the shared logging set-up: the notifier under granian, the others
under uvicorn.

Used by ``socialproof serve <service>``; the app is built by the service's ``create_app`` factory
so that nothing is constructed at import time.

uvicorn (catalog, orders, social) runs on uvloop with httptools (both installed by
``uvicorn[standard]``; named explicitly so a missing one fails at start instead of silently
serving slower).

granian (the notifier, :data:`GRANIAN`): its HTTP server is Rust (hyper, on a thread of its own),
and Python only runs the ASGI app, so one process answers the read API's cache hits through the
public ASGI interface at 1.2-1.8x the rate uvicorn reached only with a subclass of its private
HTTP protocol, and about 2x uvicorn with the same ASGI app (figures in
:mod:`services.notifier.fastpath`). An app may name the ASGI app to serve in front of itself in
``app.state.asgi_app`` (:func:`outermost`; the notifier's read API fast path). granian
runs a main process that supervises ``processes`` worker processes (the notifier's
``SOCIALPROOF_NOTIFIER_PROCESSES``) on one listening socket, each with its own app: one Python
process is one core, and the read API's fast path is CPU-bound. The main process forwards
SIGTERM/SIGINT to the workers, and exits non-zero if one of them exits by itself (Kubernetes
restarts the pod). With several workers, Prometheus metrics are kept per process in a shared
directory (prometheus_client's multiprocess mode) and ``/metrics`` of any of them reports the sum.

Stopping: connections that never end by themselves (SSE, WebSocket) must be ended first, or
every stop takes the whole graceful timeout; apps append callables to
``app.state.on_exit_signal`` for that, called as soon as the stop signal arrives (granian
itself would only run the lifespan shutdown once every connection has ended: see
:class:`_Stopping`). Requests in flight then get up to :data:`GRACEFUL_S` to finish before the
app's lifespan shutdown runs. Measured: a notifier with 2 SSE streams open stops in 0.6-0.8 s
(30 s, granian's kill timeout, without :class:`_Stopping`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from socialproof import logs
from socialproof.settings import Settings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, calling the app's ``on_exit_signal`` callbacks as soon as a shutdown
    signal arrives (uvicorn waits for open connections before it runs the lifespan shutdown)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.fastapi_app = app

    def handle_exit(self, sig: int, frame: object) -> None:
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        for callback in getattr(self.fastapi_app.state, "on_exit_signal", []):
            self._loop.call_soon_threadsafe(callback)

    async def serve(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)


def outermost(app: FastAPI) -> ASGIApp:
    """What a server serves: ``app.state.asgi_app`` if the app put an ASGI app in front of itself
    there (the notifier's read API fast path), else the app."""
    return getattr(app.state, "asgi_app", app)


#: services served by granian (the read API's p99 target needs it); the others by uvicorn
GRANIAN = frozenset({"notifier"})
#: seconds requests in flight get to finish after SIGTERM (Kubernetes gives 30 s by default)
GRACEFUL_S = 20
#: requests one granian worker hands to Python at once (granian's backpressure, by default
#: backlog/workers = 1,024): every open SSE or WebSocket connection is one, and one notifier
#: process holds thousands (bench/sse_fanout.py: 5,000)
MAX_CONCURRENT_REQUESTS = 100_000


def serve(
    service: str,
    create_app: Callable[[Settings], FastAPI],
    settings: Settings,
    port: int,
    processes: int = 1,
) -> None:
    logs.configure(service, settings.log_level, settings.log_format)
    settings.require_service_token()  # refuse to start with write APIs left open
    if service in GRANIAN:
        _run_granian(service, create_app, settings, port, processes)
    elif processes > 1:
        raise ValueError(f"{service}: several processes are served by granian only")
    else:
        _run(create_app, settings, port)


def _run(create_app: Callable[[Settings], FastAPI], settings: Settings, port: int) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        outermost(app),
        host=settings.host,
        port=port,
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        # Let in-flight requests finish on SIGTERM.
        timeout_graceful_shutdown=GRACEFUL_S,
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
    _Server(config, app).run()


# --- granian ------------------------------------------------------------------------------------


def _run_granian(
    service: str,
    create_app: Callable[[Settings], FastAPI],
    settings: Settings,
    port: int,
    processes: int,
) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    loader = functools.partial(_granian_app, service, create_app, settings)
    with tempfile.TemporaryDirectory(prefix=f"socialproof-{service}-metrics-") as metrics:
        if processes > 1:
            # read by prometheus_client when the workers import it: they must be fresh
            # interpreters (spawned), not forks of this one, which imported it already
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
            multiprocessing.set_start_method("spawn", force=True)
        Granian(
            f"{create_app.__module__}:{create_app.__name__}",  # named in granian's logs only
            address=settings.host,
            port=port,
            interface=Interfaces.ASGI,  # with lifespan
            workers=processes,
            loop=Loops.uvloop,
            backpressure=MAX_CONCURRENT_REQUESTS,
            log_level=LogLevels(settings.log_level.lower()),
            # granian's loggers go through ours (socialproof.logs), as uvicorn's do
            log_dictconfig={
                "loggers": {
                    name: {"handlers": [], "propagate": True}
                    for name in ("_granian", "granian.access")
                }
            },
            log_access=settings.log_level == "DEBUG",
            # a worker that has not stopped by then (requests in flight get GRACEFUL_S, then
            # the lifespan shutdown runs) is killed
            workers_kill_timeout=GRACEFUL_S + 10,
        ).serve(target_loader=loader)  # exits non-zero if a worker exited by itself


def _granian_app(
    service: str, create_app: Callable[[Settings], FastAPI], settings: Settings, _target: str
) -> ASGIApp:
    """In each granian worker: the app, behind :class:`_Stopping`."""
    logs.configure(service, settings.log_level, settings.log_format)  # a spawned worker is new
    return _Stopping(create_app(settings), GRACEFUL_S)


class _Stopping:
    """The app under granian, told when a stop begins, with in-flight requests bounded in time.

    A granian worker stops on SIGTERM or SIGINT: it stops accepting, lets every request in flight
    finish, and only then runs the ASGI lifespan shutdown. So an SSE stream, which never ends by
    itself, would hold the stop until granian kills the worker. On SIGTERM this calls the app's
    ``on_exit_signal`` callbacks (which end the live streams; clients reconnect elsewhere) and
    then has granian stop as it does on SIGINT (asyncio keeps one handler per signal: the one
    installed here, during the lifespan startup, which granian's worker runs after installing
    its own, replaces granian's for SIGTERM). Requests still in flight ``grace_s`` later are
    cancelled, so that the lifespan shutdown runs, as under uvicorn's graceful timeout."""

    def __init__(self, app: FastAPI, grace_s: float) -> None:
        self.fastapi_app, self.app, self.grace_s = app, outermost(app), grace_s
        self.in_flight: set[asyncio.Task] = set()
        self.stopping = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, functools.partial(self._lifespan, receive), send)
            return
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - granian runs every request as an asyncio task
            await self.app(scope, receive, send)
            return
        self.in_flight.add(task)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.discard(task)

    async def _lifespan(self, receive: Receive) -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup":
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._exit_signal)
        return message

    def _exit_signal(self) -> None:
        if self.stopping:  # granian's main process forwards the signal the group got too
            return
        self.stopping = True
        log.info("stopping", extra={"in_flight": len(self.in_flight)})
        for callback in getattr(self.fastapi_app.state, "on_exit_signal", []):
            callback()
        asyncio.get_running_loop().call_later(self.grace_s, self._cancel_in_flight)
        os.kill(os.getpid(), signal.SIGINT)  # granian's own stop

    def _cancel_in_flight(self) -> None:
        if self.in_flight:
            log.warning(
                "cancelling requests still in flight", extra={"in_flight": len(self.in_flight)}
            )
        for task in list(self.in_flight):
            task.cancel()
