"""The catalog service: products, published to the compacted ``catalog.products`` topic.

The service is the topic's only writer and keeps no database: its product list is a view rebuilt
from the topic on every start (:class:`socialproof.topicview.TopicView`); ``/readyz`` answers 503
until that replay has caught up. Every write answers only after the broker acknowledged the event
*and* the service's own view applied it, so a read right after a write sees it. A delete is a
``product.deleted`` event followed by a tombstone with the same key, so compaction eventually
forgets the product entirely.

Other services learn products from the topic, never by calling this API.

Run: ``socialproof serve catalog`` (port ``SOCIALPROOF_CATALOG_PORT``, default 8001).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier, ProductDeleted, ProductFields, ProductRef, ProductUpserted
from contracts.topics import PRODUCTS
from services.catalog.settings import CatalogSettings
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    ServiceAuth,
    create_service_app,
)
from socialproof.kafka import EventPublisher, topic_name
from socialproof.money import DecimalString, IsoCurrency
from socialproof.paging import Cursor, Limit, Page, paginate
from socialproof.productview import ProductTable
from socialproof.topicview import TopicView, lifespan_with_view, view_readiness

SERVICE = "catalog"
log = logging.getLogger("socialproof.catalog")

ImageUrl = Annotated[
    str,
    Field(
        max_length=2048,
        pattern=r"^https?://[^\s/]+\S*$",
        examples=["https://shop.example/img/p1.jpg"],
    ),
]
Category = Annotated[str, Field(min_length=1, max_length=100, examples=["kitchen"])]

EXAMPLE = {
    "name": "Espresso cup",
    "description": "Stoneware, 90 ml",
    "price": "12.50",
    "currency": "EUR",
    "image_url": "https://shop.example/img/cup.jpg",
    "category": "kitchen",
    "active": True,
}


class ProductData(BaseModel):
    """The fields of a product a client sets (every field, PUT replaces the whole product)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    price: DecimalString
    currency: IsoCurrency
    image_url: ImageUrl | None = None
    category: Category | None = None
    active: bool = True


class ProductCreate(ProductData):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"id": "cup-espresso", **EXAMPLE}]}
    )

    id: Identifier | None = Field(
        default=None,
        description="the product id; generated when omitted",
        examples=["cup-espresso"],
    )


class Product(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "cup-espresso", **EXAMPLE}]})

    id: str
    name: str
    description: str
    price: str = Field(description="decimal string", examples=["12.50"])
    currency: str
    image_url: str | None
    category: str | None
    active: bool

    @classmethod
    def of(cls, p: ProductFields) -> Product:
        return cls(
            id=p.product_id,
            name=p.name,
            description=p.description,
            price=format(p.price, "f"),
            currency=p.currency,
            image_url=p.image_url,
            category=p.category,
            active=p.active,
        )


ProductId = Annotated[Identifier, Path(description="product id", examples=["cup-espresso"])]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no such product"}}


def _fields(product_id: str, data: ProductData) -> ProductFields:
    return ProductFields(product_id=product_id, **data.model_dump(exclude={"id"}))


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    table = ProductTable()
    # One writer at a time per process: "does it exist?" and the publish must not interleave.
    write_lock = asyncio.Lock()

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        description=(
            "The product catalogue. Writes need the service token and answer once the broker "
            "acknowledged the event; other services learn products from the compacted "
            "`catalog.products` topic."
        ),
        lifespan=lifespan_with_view(
            settings,
            SERVICE,
            lambda _: TopicView(settings, [PRODUCTS], table.apply, name=SERVICE),
            redis=False,
        ),
        readiness=view_readiness,
    )

    def publisher(request: Request) -> EventPublisher:
        return request.app.state.publisher

    def view(request: Request) -> TopicView:
        return request.app.state.view

    def existing(product_id: str) -> ProductFields:
        found = table.get(product_id)
        if found is None:
            raise ApiError(404, "not_found", f"no product {product_id}")
        return found

    async def upsert(request: Request, fields: ProductFields) -> None:
        event = ProductUpserted.create(fields, producer=SERVICE)
        delivered = await publisher(request).publish(event)
        log.info("product upserted", extra={"event_id": str(event.event_id)})
        await view(request).wait_delivered(delivered)

    @app.post(
        "/v1/products",
        status_code=201,
        response_model=Product,
        tags=["products"],
        summary="Create a product (the client may choose its id)",
        responses={
            200: {"model": Product, "description": "the same product already existed: unchanged"},
            409: {"model": ErrorBody, "description": "another product has this id"},
            **AUTH_RESPONSES,
            **ERROR_RESPONSES,
        },
    )
    async def create_product(body: ProductCreate, request: Request, _: ServiceAuth) -> Response:
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
            await upsert(request, fields)
        return JSONResponse(Product.of(fields).model_dump(), status_code=201)

    @app.get(
        "/v1/products/{product_id}",
        response_model=Product,
        tags=["products"],
        summary="Read a product",
        responses=NOT_FOUND,
    )
    async def get_product(product_id: ProductId) -> Product:
        return Product.of(existing(product_id))

    @app.put(
        "/v1/products/{product_id}",
        response_model=Product,
        tags=["products"],
        summary="Replace a product's fields",
        responses={**NOT_FOUND, **AUTH_RESPONSES, **ERROR_RESPONSES},
    )
    async def update_product(
        product_id: ProductId, body: ProductData, request: Request, _: ServiceAuth
    ) -> Product:
        async with write_lock:
            current = existing(product_id)
            fields = _fields(product_id, body)
            if fields != current:  # an unchanged PUT publishes nothing
                await upsert(request, fields)
        return Product.of(fields)

    @app.delete(
        "/v1/products/{product_id}",
        status_code=204,
        tags=["products"],
        summary="Delete a product (a deleted event, then a tombstone)",
        responses={**NOT_FOUND, **AUTH_RESPONSES, 503: ERROR_RESPONSES[503]},
    )
    async def delete_product(product_id: ProductId, request: Request, _: ServiceAuth) -> Response:
        async with write_lock:
            existing(product_id)
            event = ProductDeleted.create(ProductRef(product_id=product_id), producer=SERVICE)
            await publisher(request).publish(event)
            log.info("product deleted", extra={"event_id": str(event.event_id)})
            # The tombstone lets compaction drop the key; same key, so same partition, after it.
            delivered = await publisher(request).publish_raw(
                topic_name(settings, PRODUCTS),
                key=product_id.encode(),
                value=None,
                headers={"event_type": "tombstone"},
                event_type="tombstone",
            )
            await view(request).wait_delivered(delivered)
        return Response(status_code=204)

    @app.get(
        "/v1/products",
        response_model=Page[Product],
        tags=["products"],
        summary="List products by id, page by page, optionally of one category",
    )
    async def list_products(
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

    return app
