"""Runs one HTTP service under uvicorn with the shared logging set-up.

Used by ``socialproof serve <service>``; the app is built by the service's ``create_app`` factory
so that nothing is constructed at import time.
"""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from socialproof import logs
from socialproof.settings import Settings


def serve(
    service: str, create_app: Callable[[Settings], FastAPI], settings: Settings, port: int
) -> None:
    logs.configure(service, settings.log_level, settings.log_format)
    settings.require_service_token()  # refuse to start with write APIs left open
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        # Let in-flight requests finish on SIGTERM (Kubernetes gives 30 s by default).
        timeout_graceful_shutdown=20,
        lifespan="on",
    )
