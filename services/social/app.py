"""The social service's HTTP API: friendships, reviews, shares, questions and answers, privacy,
first names, erasure.

It is the only writer of ``social.friendships``, ``social.reviews``, ``social.shares``,
``social.users`` and ``social.questions``. Its view (:mod:`services.social.graph`, with
:mod:`services.social.qa`) is rebuilt on every start by replaying those topics except shares
(``/readyz`` is 503 until it caught up); each write answers once the broker acknowledged the
event and the view applied it, so the next read sees it.

- Friendships are symmetric; repeating a PUT or DELETE publishes nothing and answers the same.
- One review per user and product: posting again edits it (same ``review_id``).
- Shares accept ``Idempotency-Key`` (:func:`socialproof.idempotency.idempotent`) so a retry is
  not a 2nd share; each answers a referral link (a random ``link_token`` on the event, and the
  storefront link ``SOCIALPROOF_STOREFRONT_URL?ref=<token>``), at most
  ``SOCIALPROOF_SHARE_LINKS_PER_HOUR`` per user and rolling hour (then 429).
- Privacy by default: users who never chose get ``SOCIALPROOF_DEFAULT_SHARE_PURCHASES`` and
  ``SOCIALPROOF_DEFAULT_SHOW_IN_ACTIVITY_FEED`` (both false unless the shop configures otherwise).
- Questions and answers: asking and answering accept ``Idempotency-Key`` and are limited per
  user (``SOCIALPROOF_QA_POSTS_PER_HOUR``, counted in Redis); votes (one per user and answer),
  acceptance (the asker or the shop), reports (``SOCIALPROOF_QA_REPORTS_TO_HIDE`` hide) and the
  shop's hide/show. Listings mark reviews and answers ``verified`` when the author has a kept
  purchase of the product, read from the stream processor's view in Redis
  (:mod:`services.social.store`; 503 when Redis does not answer).
- ``DELETE /v1/users/{id}`` emits ``user.erased``; the view forgets the user and refuses further
  writes about them (409 ``user_erased``); the stream processor drops them from every counter.

Every write needs the service token; so do reads of personal data (friends, privacy, profile).

Where things are: this module builds the app and its state; the routes are in
:mod:`services.social.api` (``friendships``, ``reviews``, ``shares``, ``questions``, ``answers``,
``moderation``, ``privacy``, ``users``, what they share in ``api/deps.py``), the request and
response bodies in :mod:`services.social.schemas`, the settings in
:mod:`services.social.settings`, the Q&A keys in Redis in :mod:`services.social.store`.

Run: ``socialproof serve social`` (port ``SOCIALPROOF_SOCIAL_PORT``, default 8003). The stream
processor that turns events into counters is :mod:`services.counters`.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.social.api import ROUTERS
from services.social.api.deps import SERVICE
from services.social.graph import SocialGraph
from services.social.settings import SocialSettings
from socialproof.http import create_service_app
from socialproof.topicview import TopicView, lifespan_with_view, view_readiness


def create_app(settings: SocialSettings | None = None) -> FastAPI:
    settings = settings or SocialSettings()
    graph = SocialGraph()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "Friendships, reviews, shares, questions and answers, privacy settings, first names "
            "and erasure. Writes need the service token and answer once the broker confirmed "
            "the event."
        ),
        lifespan=lifespan_with_view(
            settings,
            SERVICE,
            lambda _: TopicView(settings, graph.topics, graph.apply, name=SERVICE),
        ),
        readiness=view_readiness,
    )
    # the routes' dependencies (services.social.api.deps) read these and the lifespan's
    # publisher, view and redis
    app.state.graph = graph
    # Writes check the view, then publish: one at a time per process so checks stay true.
    app.state.write_lock = asyncio.Lock()
    for router in ROUTERS:
        app.include_router(router)
    return app
