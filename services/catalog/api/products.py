"""The catalog's routes: create, read, replace, delete and list products.

Reads answer from the service's view of the product topic; every write publishes to the topic
and answers once the broker acknowledged it *and* the view applied it (see
:mod:`services.catalog.app`)."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from contracts.events import Identifier, ProductDeleted, ProductFields, ProductRef, ProductUpserted
from contracts.topics import PRODUCTS
from services.catalog.api.deps import SERVICE, Settings, Table
from services.catalog.schemas import Category, Product, ProductCreate, ProductData
from socialproof.deps import Publisher, View, WriteLock
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, ErrorBody, ServiceAuth
from socialproof.kafka import topic_name
from socialproof.paging import Cursor, Limit, Page, paginate
from socialproof.productview import ProductTable

log = logging.getLogger("socialproof.catalog")
router = APIRouter(tags=["products"])

ProductId = Annotated[Identifier, Path(description="product id", examples=["cup-espresso"])]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such product"}}


def _fields(product_id: str, data: ProductData) -> ProductFields:
    return ProductFields(product_id=product_id, **data.model_dump(exclude={"id"}))


def existing(table: ProductTable, product_id: str) -> ProductFields:
    found = table.get(product_id)
    if found is None:
        raise ApiError(404, "not_found", f"no product {product_id}")
    return found


async def upsert(publisher: Publisher, view: View, fields: ProductFields) -> None:
    event = ProductUpserted.create(fields, producer=SERVICE)
    delivered = await publisher.publish(event)
    log.info("product upserted", extra={"event_id": str(event.event_id)})
    await view.wait_delivered(delivered)


@router.post(
    "/v1/products",
    status_code=201,
    response_model=Product,
    summary="Create a product (the client may choose its id)",
    responses={
        200: {"model": Product, "description": "the same product already existed: unchanged"},
        409: {"model": ErrorBody, "description": "another product has this id"},
        **AUTH_RESPONSES,
        **ERROR_RESPONSES,
    },
)
async def create_product(
    body: ProductCreate,
    _: ServiceAuth,
    table: Table,
    write_lock: WriteLock,
    publisher: Publisher,
    view: View,
) -> Response:
    async with write_lock:
        product_id = body.id or f"p-{uuid.uuid4().hex}"
        fields = _fields(product_id, body)
        current = table.get(product_id)
        if current is not None:
            if current == fields:  # a retried create: nothing to do
                return JSONResponse(Product.of(current).model_dump(), status_code=200)
            raise ApiError(
                409, "product_exists", f"product {product_id} exists; use PUT to change it"
            )
        await upsert(publisher, view, fields)
    return JSONResponse(Product.of(fields).model_dump(), status_code=201)


@router.get(
    "/v1/products/{product_id}",
    response_model=Product,
    summary="Read a product",
    responses=NOT_FOUND,
)
async def get_product(product_id: ProductId, table: Table) -> Product:
    return Product.of(existing(table, product_id))


@router.put(
    "/v1/products/{product_id}",
    response_model=Product,
    summary="Replace a product's fields",
    responses={**NOT_FOUND, **AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def update_product(
    product_id: ProductId,
    body: ProductData,
    _: ServiceAuth,
    table: Table,
    write_lock: WriteLock,
    publisher: Publisher,
    view: View,
) -> Product:
    async with write_lock:
        current = existing(table, product_id)
        fields = _fields(product_id, body)
        if fields != current:  # an unchanged PUT publishes nothing
            await upsert(publisher, view, fields)
    return Product.of(fields)


@router.delete(
    "/v1/products/{product_id}",
    status_code=204,
    summary="Delete a product (a deleted event, then a tombstone)",
    responses={**NOT_FOUND, **AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
)
async def delete_product(
    product_id: ProductId,
    _: ServiceAuth,
    settings: Settings,
    table: Table,
    write_lock: WriteLock,
    publisher: Publisher,
    view: View,
) -> Response:
    async with write_lock:
        existing(table, product_id)
        event = ProductDeleted.create(ProductRef(product_id=product_id), producer=SERVICE)
        await publisher.publish(event)
        log.info("product deleted", extra={"event_id": str(event.event_id)})
        # The tombstone lets compaction drop the key; same key, so same partition, after it.
        delivered = await publisher.publish_raw(
            topic_name(settings, PRODUCTS),
            key=product_id.encode(),
            value=None,
            headers={"event_type": "tombstone"},
            event_type="tombstone",
        )
        await view.wait_delivered(delivered)
    return Response(status_code=204)


@router.get(
    "/v1/products",
    response_model=Page[Product],
    summary="List products by id, page by page, optionally of one category",
)
async def list_products(
    table: Table,
    limit: Limit = 20,
    cursor: Cursor = None,
    category: Annotated[Category | None, Query(description="only this category")] = None,
    active: Annotated[bool | None, Query(description="only (in)active products")] = None,
) -> Page[Product]:
    matching = sorted(
        (
            p
            for p in table.products.values()
            if (category is None or p.category == category)
            and (active is None or p.active == active)
        ),
        key=lambda p: p.product_id,
    )
    page, next_cursor = paginate(matching, lambda p: p.product_id, cursor, limit)
    return Page[Product](items=[Product.of(p) for p in page], next_cursor=next_cursor)
