"""Runs one HTTP service under uvicorn with the shared logging set-up.

Used by ``socialproof serve <service>``; the app is built by the service's ``create_app`` factory
so that nothing is constructed at import time. Runs on uvloop with httptools (both installed by
``uvicorn[standard]``; named explicitly so a missing one fails at start instead of silently
serving slower). An app can name its own HTTP protocol class in ``app.state.http_protocol``.
"""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from socialproof import logs
from socialproof.settings import Settings


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
    service: str, create_app: Callable[[Settings], FastAPI], settings: Settings, port: int
) -> None:
    logs.configure(service, settings.log_level, settings.log_format)
    settings.require_service_token()  # refuse to start with write APIs left open
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
    _Server(config).run()
