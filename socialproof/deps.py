"""FastAPI dependencies for what an app factory put on ``app.state``, shared by every service.

Each service's ``api/deps.py`` names its own state with :func:`from_state` (its settings class,
its view's table or book) and takes the common ones from here: the event publisher and the topic
view (both set up by the lifespan) and the write lock that keeps "check, then publish" from
interleaving within a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from socialproof.kafka import EventPublisher
from socialproof.topicview import TopicView


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning ``request.app.state.<name>``."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"state_{name}"
    return dependency


Publisher = Annotated[EventPublisher, Depends(from_state("publisher"))]
View = Annotated[TopicView, Depends(from_state("view"))]
#: one writer at a time per process: a write's checks and its publish must not interleave
WriteLock = Annotated[asyncio.Lock, Depends(from_state("write_lock"))]
