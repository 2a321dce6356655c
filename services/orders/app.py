"""The orders service: orders, refunds and cancellations, published to ``orders.events``.

It is the only writer of that topic. An order is acknowledged (201) only after the broker confirmed
the ``purchase.completed`` event (``acks=all``, idempotent producer); if the broker does not
confirm in time the answer is 503 with ``Retry-After``: not accepted, although a write that timed
out may still reach the log (measured in the 3-broker fault tests: 13-78 such records through a
leader failover), so clients retry with the same ``Idempotency-Key``, which republishes the same
order (same id, same event id) and is counted once.

Its view (:mod:`services.orders.book`) is rebuilt on every start from its own topic (orders for
``GET`` and refund checks), from ``catalog.products`` (order lines must name a known, active
product) and from ``promotions.rewards`` (the stream processor's rewards, read read_committed:
coupons, :mod:`services.orders.coupons`); ``/readyz`` is 503 until the replay caught up. A product created a moment ago may not be
in the view yet, so before calling a product unknown the service waits (at most
``SOCIALPROOF_PRODUCT_WAIT_S``) for the view to reach the end of the product topic.

An order may carry a ``referral`` (a share's link token, put on the purchase event for the stream
processor's attribution) and a ``coupon`` (a reward of the buyer's, redeemed once: held in Redis
across processes while the order is published; its discount is on the event and the answer);
``GET /v1/coupons/{code}`` reads a coupon. It may also carry the storefront's ``visitor_id``
(the widget's pseudonymous id), put on the purchase event so that badge experiments can
attribute purchases of anonymous visitors.

``Idempotency-Key`` on ``POST /v1/orders`` and on refunds makes retries safe
(:func:`socialproof.idempotency.idempotent`); the ids are reserved before publishing, so a retry after a 503
republishes the same order (consumers deduplicate by ``order_id``).

Where things are: this module builds the app and its state; the routes are in
:mod:`services.orders.api` (``orders``, ``refunds``, ``cancellations``, ``coupons``, what they
share in ``api/deps.py``), the request and response bodies in :mod:`services.orders.schemas`, the settings
in :mod:`services.orders.settings`.

Run: ``socialproof serve orders`` (port ``SOCIALPROOF_ORDERS_PORT``, default 8002).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from contracts.topics import PRODUCTS, REWARDS
from services.orders.api import ROUTERS
from services.orders.api.deps import SERVICE
from services.orders.book import OrderBook
from services.orders.settings import OrdersSettings
from socialproof.http import create_service_app
from socialproof.kafka import topic_name
from socialproof.topicview import TopicView, lifespan_with_view, view_readiness


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    book = OrderBook(
        products_topic=topic_name(settings, PRODUCTS), rewards_topic=topic_name(settings, REWARDS)
    )
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "Orders, refunds and cancellations. Writes need the service token and answer once "
            "the broker confirmed the event. `Idempotency-Key` makes retries safe."
        ),
        lifespan=lifespan_with_view(
            settings,
            SERVICE,
            # read_committed: the rewards topic is written in transactions (the processor's relay)
            lambda _: TopicView(
                settings, book.topics, book.apply, name=SERVICE, isolation="read_committed"
            ),
        ),
        readiness=view_readiness,
    )
    # the routes' dependencies (services.orders.api.deps) read these and the lifespan's
    # publisher, view and redis
    app.state.book = book
    # Refunds and cancellations check the order's state, then publish: one at a time per process.
    app.state.order_lock = asyncio.Lock()
    for router in ROUTERS:
        app.include_router(router)
    return app
