"""Runs one HTTP service under uvicorn with the shared logging set-up.

Used by ``socialproof serve <service>``; the app is built by the service's ``create_app`` factory
so that nothing is constructed at import time. Runs on uvloop with httptools (both installed by
``uvicorn[standard]``; named explicitly so a missing one fails at start instead of silently
serving slower). An app can name its own HTTP protocol class in ``app.state.http_protocol``.

``processes > 1`` (the notifier's ``SOCIALPROOF_NOTIFIER_PROCESSES``) runs that many server
processes on the one port, each with its own ``SO_REUSEPORT`` socket (the kernel spreads
connections over them) and its own app: one Python process is one core, and the read API's fast
path is CPU-bound. This process then only supervises: it forwards SIGTERM/SIGINT as SIGTERM, and
stops the others and exits non-zero if one of them exits by itself (Kubernetes restarts the pod).
Prometheus metrics are then kept per process in a shared directory (prometheus_client's
multiprocess mode) and ``/metrics`` of any of them reports the sum.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from socialproof import logs
from socialproof.settings import Settings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app as soon as a shutdown signal arrives.

    uvicorn waits for open connections before it runs the lifespan shutdown; connections that
    never end by themselves (SSE, WebSocket) must be ended first, or every stop takes the whole
    graceful timeout. Apps append callables to ``app.state.on_exit_signal`` for that.
    """

    def handle_exit(self, sig: int, frame: object) -> None:
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        app = self.config.app
        for callback in getattr(app.state, "on_exit_signal", []):
            self._loop.call_soon_threadsafe(callback)

    async def serve(self, sockets: list | None = None) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)


def serve(
    service: str,
    create_app: Callable[[Settings], FastAPI],
    settings: Settings,
    port: int,
    processes: int = 1,
) -> None:
    logs.configure(service, settings.log_level, settings.log_format)
    settings.require_service_token()  # refuse to start with write APIs left open
    if processes > 1:
        sys.exit(_supervise(service, create_app, settings, port, processes))
    _run(create_app, settings, port)


def _run(
    create_app: Callable[[Settings], FastAPI],
    settings: Settings,
    port: int,
    sockets: list[socket.socket] | None = None,
) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        # Let in-flight requests finish on SIGTERM (Kubernetes gives 30 s by default).
        timeout_graceful_shutdown=20,
        lifespan="on",
        # uvloop + httptools (uvicorn[standard]); an app may bring its own httptools protocol
        # subclass (the notifier's read API fast path)
        loop="uvloop",
        http=getattr(app.state, "http_protocol", "httptools"),
    )
    _Server(config).run(sockets)


def _supervise(
    service: str,
    create_app: Callable[[Settings], FastAPI],
    settings: Settings,
    port: int,
    processes: int,
) -> int:
    with tempfile.TemporaryDirectory(prefix=f"socialproof-{service}-metrics-") as metrics:
        # read by prometheus_client when the (freshly spawned) children import it
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
        spawn = multiprocessing.get_context("spawn")
        children = [
            spawn.Process(
                target=_child,
                args=(service, create_app, settings, port),
                name=f"{service}-{n}",
            )
            for n in range(processes)
        ]
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True
            for child in children:
                if child.pid is not None and child.is_alive():
                    # SIGTERM either way: a second SIGINT would make uvicorn skip its graceful stop
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        for child in children:
            child.start()
        log.info(
            "serving with several processes", extra={"service": service, "processes": processes}
        )
        multiprocessing.connection.wait([child.sentinel for child in children])
        if not stopping:
            gone = [c.name for c in children if c.exitcode is not None]
            log.error("a server process exited; stopping the others", extra={"exited": gone})
            stop(signal.SIGTERM, None)
        for child in children:
            child.join()
        failed = [c.exitcode for c in children if c.exitcode not in (0, -signal.SIGTERM)]
        return 1 if failed or not stopping else 0


def _child(
    service: str, create_app: Callable[[Settings], FastAPI], settings: Settings, port: int
) -> None:
    """One of several server processes: its own socket on the shared port, its own app."""
    # Own process group (a terminal's Ctrl-C reaches the supervisor only, which forwards
    # SIGTERM), and SIGTERM when the supervisor dies, however it dies.
    from socialproof.processes import die_with_parent

    die_with_parent()
    logs.configure(service, settings.log_level, settings.log_format)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, port))
    sock.set_inheritable(True)
    _run(create_app, settings, port, [sock])
