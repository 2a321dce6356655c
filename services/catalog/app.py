"""The catalog service: products, published to the compacted ``catalog.products`` topic.

The service is the topic's only writer and keeps no database: its product list is a view rebuilt
from the topic on every start (:class:`socialproof.topicview.TopicView`); ``/readyz`` answers 503
until that replay has caught up. Every write answers only after the broker acknowledged the event
*and* the service's own view applied it, so a read right after a write sees it. A delete is a
``product.deleted`` event followed by a tombstone with the same key, so compaction eventually
forgets the product entirely.

Other services learn products from the topic, never by calling this API.

Layout: this module builds the app and its state; the routes are in :mod:`services.catalog.api`,
their bodies in :mod:`services.catalog.schemas`.

Run: ``socialproof serve catalog`` (port ``SOCIALPROOF_CATALOG_PORT``, default 8001).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from contracts.topics import PRODUCTS
from services.catalog.api import products
from services.catalog.api.deps import SERVICE
from services.catalog.settings import CatalogSettings
from socialproof.http import create_service_app
from socialproof.productview import ProductTable
from socialproof.topicview import TopicView, lifespan_with_view, view_readiness


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    table = ProductTable()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "The product catalogue. Writes need the service token and answer once the broker "
            "acknowledged the event; other services learn products from the compacted "
            "`catalog.products` topic."
        ),
        # app.state gets the publisher, the broker probe and the view that fills the table
        lifespan=lifespan_with_view(
            settings,
            SERVICE,
            lambda _: TopicView(settings, [PRODUCTS], table.apply, name=SERVICE),
            redis=False,
        ),
        readiness=view_readiness,
    )
    app.state.table = table
    # One writer at a time per process: "does it exist?" and the publish must not interleave.
    app.state.write_lock = asyncio.Lock()
    app.include_router(products.router)
    return app
