"""The catalog service: products, published to the compacted ``catalog.products`` topic, and
share-to-unlock promotions, published to ``catalog.promotions``.

The service is the only writer of both topics and keeps no database: its products and
promotions are a view rebuilt from the two topics on every start
(:class:`socialproof.topicview.TopicView`); ``/readyz`` answers 503 until that replay has caught
up. Every write answers only after the broker acknowledged the event
*and* the service's own view applied it, so a read right after a write sees it. A delete is a
``product.deleted`` event followed by a tombstone with the same key, so compaction eventually
forgets the product entirely. A promotion is never deleted: a DELETE publishes
``promotion.ended`` and the promotion stays readable as ended (:mod:`services.catalog.promotions`).

Other services learn products and promotions from the topics, never by calling this API.

Layout: this module builds the app and its state; the routes are in :mod:`services.catalog.api`
(``products``, ``promotions``), their bodies in :mod:`services.catalog.schemas` and
:mod:`services.catalog.promotion_schemas`.

Run: ``socialproof serve catalog`` (port ``SOCIALPROOF_CATALOG_PORT``, default 8001).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from contracts.topics import PRODUCTS, PROMOTIONS
from services.catalog.api import products, promotions
from services.catalog.api.deps import SERVICE
from services.catalog.promotions import PromotionTable
from services.catalog.settings import CatalogSettings
from socialproof.http import create_service_app
from socialproof.kafka import topic_name
from socialproof.productview import ProductTable
from socialproof.topicview import Record, TopicView, lifespan_with_view, view_readiness


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    table = ProductTable()
    promotion_table = PromotionTable()
    # one view over both topics (one readiness, one sync), each record to its own table
    appliers = {
        topic_name(settings, PRODUCTS): table.apply,
        topic_name(settings, PROMOTIONS): promotion_table.apply,
    }

    def apply(record: Record) -> None:
        appliers[record.topic](record)

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "The product catalogue and its share-to-unlock promotions. Writes need the service "
            "token and answer once the broker acknowledged the event; other services learn "
            "products from the compacted `catalog.products` topic and promotions from "
            "`catalog.promotions`."
        ),
        # app.state gets the publisher, the broker probe and the view that fills the table
        lifespan=lifespan_with_view(
            settings,
            SERVICE,
            lambda _: TopicView(settings, [PRODUCTS, PROMOTIONS], apply, name=SERVICE),
            redis=False,
        ),
        readiness=view_readiness,
    )
    app.state.table = table
    app.state.promotions = promotion_table
    # One writer at a time per process: "does it exist?" and the publish must not interleave.
    app.state.write_lock = asyncio.Lock()
    app.include_router(products.router)
    app.include_router(promotions.router)
    return app
