"""What the social routes share: the service's state on ``app.state`` as FastAPI dependencies
(settings, the social graph, the write lock, the publisher, the view, Idempotency-Key records for
shares), publishing an event so the next read sees it (:class:`Emitter`), and the 409 for erased
users.

:func:`services.social.app.create_app` puts ``settings``, ``graph`` and ``write_lock`` on the
state; the lifespan adds ``publisher``, ``view`` and ``redis``.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request

from contracts.events import Event as ContractEvent
from services.social.graph import SocialGraph
from services.social.settings import SocialSettings
from socialproof.deps import Publisher, View, from_state
from socialproof.http import ApiError, FieldError
from socialproof.idempotency import DEFAULT_TTL_S, Idempotency
from socialproof.kafka import EventPublisher
from socialproof.topicview import TopicView

SERVICE = "social"
log = logging.getLogger("socialproof.social")


async def get_share_records(request: Request) -> Idempotency:
    settings: SocialSettings = request.app.state.settings
    return Idempotency(request.app.state.redis, settings.redis_namespace, "shares", DEFAULT_TTL_S)


Settings = Annotated[SocialSettings, Depends(from_state("settings"))]
Graph = Annotated[SocialGraph, Depends(from_state("graph"))]
ShareRecords = Annotated[Idempotency, Depends(get_share_records)]


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
