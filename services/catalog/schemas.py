"""The catalog API's request and response bodies (what the OpenAPI document shows)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier, ProductFields
from socialproof.money import DecimalString, IsoCurrency

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
