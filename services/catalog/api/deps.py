"""What the catalog's routes take from the app's state, as FastAPI dependencies: the settings,
the product table (filled by the view of the product topic), the write lock, the publisher and
the view.

:func:`services.catalog.app.create_app` puts ``settings``, ``table`` and ``write_lock`` on the
state; the lifespan adds ``publisher`` and ``view``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from services.catalog.settings import CatalogSettings
from socialproof.kafka import EventPublisher
from socialproof.productview import ProductTable
from socialproof.topicview import TopicView

SERVICE = "catalog"


async def get_settings(request: Request) -> CatalogSettings:
    return request.app.state.settings


async def get_table(request: Request) -> ProductTable:
    return request.app.state.table


async def get_write_lock(request: Request) -> asyncio.Lock:
    return request.app.state.write_lock


async def get_publisher(request: Request) -> EventPublisher:
    return request.app.state.publisher


async def get_view(request: Request) -> TopicView:
    return request.app.state.view


Settings = Annotated[CatalogSettings, Depends(get_settings)]
Table = Annotated[ProductTable, Depends(get_table)]
#: one writer at a time per process: "does it exist?" and the publish must not interleave
WriteLock = Annotated[asyncio.Lock, Depends(get_write_lock)]
Publisher = Annotated[EventPublisher, Depends(get_publisher)]
View = Annotated[TopicView, Depends(get_view)]
