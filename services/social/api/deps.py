"""What the social routes share: the service's state on ``app.state`` as FastAPI dependencies
(settings, the social graph, the write lock, the publisher, the view, Idempotency-Key records for
shares, questions and answers, the Q&A keys in Redis), publishing an event so the next read sees
it (:class:`Emitter`), the 409 for erased users, and looking a Q&A id up once more after the view
caught up with the topics (:func:`caught_up`).

:func:`services.social.app.create_app` puts ``settings``, ``graph`` and ``write_lock`` on the
state; the lifespan adds ``publisher``, ``view`` and ``redis`` (a
:class:`socialproof.http.ServingStore`: one Redis or a Redis Cluster, whichever ``REDIS_URL``
names).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from contracts.events import Event as ContractEvent
from services.social.graph import SocialGraph
from services.social.settings import SocialSettings
from services.social.store import QaStore
from socialproof.deps import Publisher, View, from_state
from socialproof.http import RETRY_AFTER_S, ApiError, FieldError
from socialproof.idempotency import DEFAULT_TTL_S, Idempotency
from socialproof.kafka import EventPublisher
from socialproof.topicview import TopicView, ViewUnavailable

SERVICE = "social"
log = logging.getLogger("socialproof.social")


async def get_share_records(request: Request) -> Idempotency:
    settings: SocialSettings = request.app.state.settings
    redis = await request.app.state.redis.client()
    return Idempotency(redis, settings.redis_namespace, "shares", DEFAULT_TTL_S)


async def get_question_records(request: Request) -> Idempotency:
    settings: SocialSettings = request.app.state.settings
    redis = await request.app.state.redis.client()
    return Idempotency(redis, settings.redis_namespace, "questions", DEFAULT_TTL_S)


async def get_answer_records(request: Request) -> Idempotency:
    settings: SocialSettings = request.app.state.settings
    redis = await request.app.state.redis.client()
    return Idempotency(redis, settings.redis_namespace, "answers", DEFAULT_TTL_S)


async def get_qa_store(request: Request) -> QaStore:
    settings: SocialSettings = request.app.state.settings
    return QaStore(await request.app.state.redis.client(), settings.redis_namespace)


Settings = Annotated[SocialSettings, Depends(from_state("settings"))]
Graph = Annotated[SocialGraph, Depends(from_state("graph"))]
ShareRecords = Annotated[Idempotency, Depends(get_share_records)]
QuestionRecords = Annotated[Idempotency, Depends(get_question_records)]
AnswerRecords = Annotated[Idempotency, Depends(get_answer_records)]
Store = Annotated[QaStore, Depends(get_qa_store)]

T = TypeVar("T")
#: how long a write waits for the view to reach the topics' end before calling an id unknown
SYNC_WAIT_S = 2.0


class Emitter:
    """Publishes an event and waits until the view applied it, so the next read sees it."""

    def __init__(self, publisher: EventPublisher, view: TopicView) -> None:
        self.publisher, self.view = publisher, view

    async def __call__(self, event: ContractEvent) -> None:
        delivered = await self.publisher.publish(event)
        log.info(event.event_type, extra={"event_id": str(event.event_id)})
        await self.view.wait_delivered(delivered)


async def get_emitter(publisher: Publisher, view: View) -> Emitter:
    return Emitter(publisher, view)


Emit = Annotated[Emitter, Depends(get_emitter)]


def not_erased(graph: SocialGraph, **users: str) -> None:
    """409 ``user_erased`` naming the field of the first erased user."""
    for field, user_id in users.items():
        if user_id in graph.erased:
            raise ApiError(
                409,
                "user_erased",
                f"user {user_id} was erased",
                fields=[FieldError(field=field, message="erased user", type="user_erased")],
            )


async def caught_up(view: TopicView, lookup: Callable[[], T | None]) -> T | None:
    """``lookup()``, or if it finds nothing, ``lookup()`` again once the view applied everything
    written so far: another process of the service may have created it a moment ago."""
    found = lookup()
    if found is not None:
        return found
    try:
        await view.sync(SYNC_WAIT_S)
    except ViewUnavailable as exc:
        raise ApiError(
            503,
            "broker_unavailable",
            "the event broker does not answer, so the id cannot be checked; nothing was accepted",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return lookup()
