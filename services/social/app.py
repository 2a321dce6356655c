"""The social service's HTTP API: friendships, reviews, shares and privacy settings.

Run: ``socialproof serve social`` (port ``SOCIALPROOF_SOCIAL_PORT``, default 8003). The stream
processor that turns events into counters is :mod:`services.social.processor`.
"""

from __future__ import annotations

from fastapi import FastAPI

from socialproof.http import create_service_app, standard_lifespan, standard_readiness
from socialproof.settings import SocialSettings

SERVICE = "social"


def create_app(settings: SocialSettings | None = None) -> FastAPI:
    settings = settings or SocialSettings()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description="Friendships, reviews, shares and privacy settings.",
        lifespan=standard_lifespan(settings, SERVICE),
        readiness=standard_readiness,
    )
    return app
