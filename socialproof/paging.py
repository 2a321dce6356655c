"""Cursor paging for list endpoints: ``?limit=&cursor=`` in, ``{"items", "next_cursor"}`` out.

The cursor is the sort key of the last item of the previous page, so pages stay stable while items
are added or removed elsewhere in the list (no skipped or repeated items, unlike offsets).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from contracts.events import Identifier

T = TypeVar("T")
M = TypeVar("M")

Limit = Annotated[int, Query(ge=1, le=100, description="items per page")]
Cursor = Annotated[
    Identifier | None,
    Query(description="`next_cursor` of the previous page; omit for the first page"),
]


class Page(BaseModel, Generic[M]):
    items: list[M]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


def paginate(
    items: Sequence[T], key: Callable[[T], str], cursor: str | None, limit: int
) -> tuple[list[T], str | None]:
    """``items`` sorted by ``key``: the page after ``cursor`` and the next cursor (or None)."""
    start = 0 if cursor is None else bisect.bisect_right([key(i) for i in items], cursor)
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, (key(page[-1]) if more and page else None)
