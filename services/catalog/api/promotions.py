"""The catalog's promotion routes: create, read, list, replace and end share-to-unlock promotions.

Each write publishes to ``catalog.promotions`` (``promotion.defined`` for a create or a change,
``promotion.ended`` for a DELETE) and answers once the broker acknowledged it *and* the catalog's
view applied it, so a read right after it sees it. The stream processor learns promotions from
the topic, never from this API. An ended promotion stays readable and can no longer change.

A promotion's scope is one product of this catalogue or a category; a ``product_id`` the catalog
does not know is a 422 (after the view reached the end of the topics, as orders does, since the
product may have been created a moment ago).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from contracts.events import (
    Identifier,
    PromotionDefined,
    PromotionEnded,
    PromotionEndedPayload,
    PromotionFields,
)
from services.catalog.api.deps import SERVICE, Promotions, Table
from services.catalog.promotion_schemas import Promotion, PromotionCreate, PromotionData
from services.catalog.promotions import PromotionState, PromotionTable, Status
from services.catalog.schemas import Category
from socialproof.deps import Publisher, View, WriteLock
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    RETRY_AFTER_S,
    ApiError,
    ErrorBody,
    FieldError,
    ServiceAuth,
)
from socialproof.paging import Cursor, Limit, Page, paginate
from socialproof.productview import ProductTable
from socialproof.topicview import TopicView, ViewUnavailable

log = logging.getLogger("socialproof.catalog")
router = APIRouter(tags=["promotions"])

#: how long a create waits for a just-created product to reach the view before calling it unknown
PRODUCT_WAIT_S = 2.0

PromotionId = Annotated[Identifier, Path(description="promotion id", examples=["promo-1"])]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such promotion"}}
INVALID = {
    422: {
        "model": ErrorBody,
        "description": "invalid promotion; `fields` names each problem (e.g. `ends_at`, "
        "`sharer_reward.value`, `product_id` for an unknown product)",
    }
}
WRITE_RESPONSES = {**AUTH_RESPONSES, **ERROR_RESPONSES, **INVALID}


def now() -> datetime:
    return datetime.now(UTC)


def answer(promotion: PromotionState, status_code: int = 200) -> JSONResponse:
    body = Promotion.of(promotion, now()).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code)


def existing(promotions: PromotionTable, promotion_id: str) -> PromotionState:
    found = promotions.get(promotion_id)
    if found is None:
        raise ApiError(404, "not_found", f"no promotion {promotion_id}")
    return found


def valid(body: PromotionData, promotion_id: str) -> PromotionFields:
    """The event payload for ``body``, or a 422 naming every field that is wrong together."""
    if found := body.problems():
        raise invalid(found)
    return body.fields(promotion_id)


async def known_product(product_id: str | None, products: ProductTable, view: TopicView) -> None:
    """A 422 naming ``product_id`` unless the catalog has that product (or none is given)."""
    if product_id is None or products.get(product_id) is not None:
        return
    # The product may have been created a moment ago: let the view reach the topics' end.
    try:
        await view.sync(PRODUCT_WAIT_S)
    except ViewUnavailable as exc:
        raise ApiError(
            503,
            "broker_unavailable",
            "the event broker does not answer, so the product cannot be checked; nothing was "
            "accepted: retry",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    if products.get(product_id) is None:
        message = f"unknown product {product_id}"
        raise invalid([FieldError(field="product_id", message=message, type="unknown_product")])


def invalid(found: list[FieldError]) -> ApiError:
    return ApiError(
        422, "validation_failed", f"invalid promotion: {found[0].message}", fields=found
    )


async def define(publisher: Publisher, view: View, fields: PromotionFields) -> None:
    event = PromotionDefined.create(fields, producer=SERVICE)
    delivered = await publisher.publish(event)
    log.info(
        "promotion defined",
        extra={"event_id": str(event.event_id), "promotion_id": fields.promotion_id},
    )
    await view.wait_delivered(delivered)


def clash(current: PromotionState | None, fields: PromotionFields) -> bool:
    """Whether a create of ``fields`` meets another promotion under the same id (409)."""
    return current is not None and current.fields != fields


@router.post(
    "/v1/promotions",
    status_code=201,
    response_model=Promotion,
    summary="Create a share-to-unlock promotion for a product or a category",
    responses={
        200: {"model": Promotion, "description": "the same promotion already existed: unchanged"},
        409: {"model": ErrorBody, "description": "another promotion has this id"},
        **WRITE_RESPONSES,
    },
)
async def create_promotion(
    body: PromotionCreate,
    _: ServiceAuth,
    products: Table,
    promotions: Promotions,
    write_lock: WriteLock,
    publisher: Publisher,
    view: View,
) -> JSONResponse:
    promotion_id = body.id or f"promo-{uuid.uuid4().hex}"
    fields = valid(body, promotion_id)
    current = promotions.get(promotion_id)
    if current is not None and current.fields == fields:  # a retried create: nothing to do
        return answer(current)
    if not clash(current, fields):
        await known_product(body.product_id, products, view)
    async with write_lock:
        current = promotions.get(promotion_id)
        if clash(current, fields):
            raise ApiError(
                409, "promotion_exists", f"promotion {promotion_id} exists; use PUT to change it"
            )
        if current is not None:  # a retried create: nothing to do
            return answer(current)
        await define(publisher, view, fields)
    return answer(promotions.get(promotion_id) or PromotionState(fields), 201)


@router.get(
    "/v1/promotions/{promotion_id}",
    response_model=Promotion,
    summary="Read a promotion (also once ended)",
    responses=NOT_FOUND,
)
async def get_promotion(promotion_id: PromotionId, promotions: Promotions) -> JSONResponse:
    return answer(existing(promotions, promotion_id))


@router.put(
    "/v1/promotions/{promotion_id}",
    response_model=Promotion,
    summary="Replace a promotion's fields (not once it ended)",
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "the promotion ended: it can no longer change"},
        **WRITE_RESPONSES,
    },
)
async def update_promotion(
    promotion_id: PromotionId,
    body: PromotionData,
    _: ServiceAuth,
    products: Table,
    promotions: Promotions,
    write_lock: WriteLock,
    publisher: Publisher,
    view: View,
) -> JSONResponse:
    existing(promotions, promotion_id)
    fields = valid(body, promotion_id)
    await known_product(body.product_id, products, view)
    async with write_lock:
        current = existing(promotions, promotion_id)
        if current.status(now()) == "ended":
            raise ApiError(
                409, "promotion_ended", f"promotion {promotion_id} ended; create a new one"
            )
        if current.fields != fields:  # an unchanged PUT publishes nothing
            await define(publisher, view, fields)
    return answer(existing(promotions, promotion_id))


@router.delete(
    "/v1/promotions/{promotion_id}",
    response_model=Promotion,
    summary="End a promotion now (it stays readable, with status ended); idempotent",
    responses={**NOT_FOUND, **AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
)
async def end_promotion(
    promotion_id: PromotionId,
    _: ServiceAuth,
    promotions: Promotions,
    write_lock: WriteLock,
    publisher: Publisher,
    view: View,
) -> JSONResponse:
    async with write_lock:
        current = existing(promotions, promotion_id)
        if current.ended_at is None:  # ending an ended promotion again publishes nothing
            event = PromotionEnded.create(
                PromotionEndedPayload(promotion_id=promotion_id), producer=SERVICE
            )
            delivered = await publisher.publish(event)
            log.info(
                "promotion ended",
                extra={"event_id": str(event.event_id), "promotion_id": promotion_id},
            )
            await view.wait_delivered(delivered)
    return answer(existing(promotions, promotion_id))


@router.get(
    "/v1/promotions",
    response_model=Page[Promotion],
    summary="List promotions by id, page by page; filter by product, category or status",
)
async def list_promotions(
    promotions: Promotions,
    products: Table,
    limit: Limit = 20,
    cursor: Cursor = None,
    product_id: Annotated[
        Identifier | None,
        Query(
            description="only promotions that apply to this product: its own and those of its "
            "(current) category"
        ),
    ] = None,
    category: Annotated[Category | None, Query(description="only this category's")] = None,
    status: Annotated[Status | None, Query(description="only promotions in this status")] = None,
) -> Page[Promotion]:
    at = now()
    product = None if product_id is None else products.get(product_id)
    product_category = None if product is None else product.category

    def wanted(p: PromotionState) -> bool:
        f = p.fields
        in_scope = (
            product_id is None
            or f.product_id == product_id
            or (f.category is not None and f.category == product_category)
        )
        return (
            in_scope
            and (category is None or f.category == category)
            and (status is None or p.status(at) == status)
        )

    matching = [p for p in promotions.all() if wanted(p)]
    page, next_cursor = paginate(matching, lambda p: p.promotion_id, cursor, limit)
    return Page[Promotion](items=[Promotion.of(p, at) for p in page], next_cursor=next_cursor)
