"""The demo storefront's shares and purchases: **dev only**, like :mod:`.demoqa`.

These routes exist only when ``SOCIALPROOF_DEMO_ENABLED`` is true. They let the demo page share a
product and buy it as the selected viewer, by calling the dev stack's social and orders services
**with the service token**, for anyone who can reach the page: exactly what a real shop must
never expose (its backend makes these calls for the signed-in shopper).

- ``POST /demo/products/{id}/shares`` ``{"user_id", "channel"?}`` -> the social service's
  ``POST /v1/shares`` (its answer carries the referral ``link_token``);
- ``POST /demo/orders`` ``{"user_id", "product_id", "unit_price"?, "referral"?, "coupon"?,
  "visitor_id"?}`` -> the orders service's ``POST /v1/orders`` (one line, quantity 1, EUR);
  ``referral`` is the ``?ref=`` token of the link the shopper arrived through, ``visitor_id`` the
  widget's ``SocialProof.visitorId()`` (badge experiments attribute the purchase with it; absent
  when tracking is off).

The services' status and JSON body are passed back as they are; 503 when one cannot be reached.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import CouponCode, Identifier, LinkToken, VisitorId
from services.notifier.api.demoqa import Id, forward
from services.notifier.api.deps import RateLimited

router = APIRouter(tags=["demo (dev only)"])


class DemoShareIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier = Field(description="the demo viewer who shares")
    channel: Literal["link", "facebook", "x", "whatsapp", "email", "other"] = "link"


class DemoOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier = Field(description="the demo viewer who buys")
    product_id: Identifier
    unit_price: str = Field(default="19.99", pattern=r"^\d{1,9}(\.\d{1,2})?$")
    referral: LinkToken | None = Field(default=None, description="the link's `?ref=` token")
    coupon: CouponCode | None = None
    visitor_id: VisitorId | None = Field(
        default=None, description="the widget's `SocialProof.visitorId()`"
    )


@router.post(
    "/demo/products/{product_id}/shares",
    summary="Share as a demo viewer, with the service token: demo only, never in production",
)
async def demo_share(
    product_id: Id, body: DemoShareIn, request: Request, _: RateLimited
) -> Response:
    share = {"user_id": body.user_id, "product_id": product_id, "channel": body.channel}
    return await forward(request, "social", "POST", "/v1/shares", share)


@router.post(
    "/demo/orders",
    summary="Buy as a demo viewer, with the service token: demo only, never in production",
)
async def demo_order(body: DemoOrderIn, request: Request, _: RateLimited) -> Response:
    order: dict = {
        "user_id": body.user_id,
        "currency": "EUR",
        "lines": [{"product_id": body.product_id, "quantity": 1, "unit_price": body.unit_price}],
    }
    if body.referral is not None:
        order["referral"] = body.referral
    if body.coupon is not None:
        order["coupon"] = body.coupon
    if body.visitor_id is not None:
        order["visitor_id"] = body.visitor_id
    key = request.headers.get("idempotency-key")
    headers = {"Idempotency-Key": key} if key else None
    return await forward(request, "orders", "POST", "/v1/orders", order, headers)
