"""The catalog service: products, published to the compacted ``catalog.products`` topic.

Run: ``socialproof serve catalog`` (port ``SOCIALPROOF_CATALOG_PORT``, default 8001).
"""

from __future__ import annotations

from fastapi import FastAPI

from socialproof.http import create_service_app, standard_lifespan, standard_readiness
from socialproof.settings import CatalogSettings

SERVICE = "catalog"


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description="The product catalogue. Other services learn products from its topic.",
        lifespan=standard_lifespan(settings, SERVICE),
        readiness=standard_readiness,
    )
    return app
