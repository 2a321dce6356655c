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

Garbage collection: the book keeps every order in Python objects, so CPython's full collections
scan a heap that grows with every order; each paused the service for longer (measured in
``make bench``'s e2e_latency at 2,000 events/s, of which 900 purchases/s: 4 full collections of
50-394 ms in every 90 s, the tail of ``POST /v1/orders``). Once the view caught up, the service
calls :func:`socialproof.gctune.tune_gc` (the replayed book frozen out of the collector, full
collections 100 times rarer): 1 full collection in 90 s, the one before the catch-up; the POST's
p99 from 242-301 ms to 106-107 ms and sent → produced p99 from 156-293 ms to 34-36 ms (runs
alternating with and without, load 2.6-6.7).

Run: ``socialproof serve orders`` (port ``SOCIALPROOF_ORDERS_PORT``, default 8002).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from contracts.topics import PRODUCTS, REWARDS
from services.orders.api import ROUTERS
from services.orders.api.deps import SERVICE
from services.orders.book import OrderBook
from services.orders.settings import OrdersSettings
from socialproof.gctune import tune_gc
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
        lifespan=tuning_gc_once_caught_up(
            lifespan_with_view(
                settings,
                SERVICE,
                # read_committed: the rewards topic is written in transactions (the relay)
                lambda _: TopicView(
                    settings, book.topics, book.apply, name=SERVICE, isolation="read_committed"
                ),
            )
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


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def tuning_gc_once_caught_up(
    lifespan: Lifespan, tune: Callable[[], None] = tune_gc, poll_s: float = 0.1
) -> Lifespan:
    """``lifespan`` (which puts the view on ``app.state.view``), then ``tune()`` once, when the
    view has caught up: the end of the service's start-up (see the module's docstring)."""

    @asynccontextmanager
    async def tuned(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            view = app.state.view

            async def when_caught_up() -> None:
                while not view.caught_up:
                    await asyncio.sleep(poll_s)
                tune()

            task = asyncio.create_task(when_caught_up(), name="orders-tune-gc")
            try:
                yield
            finally:
                task.cancel()

    return tuned
