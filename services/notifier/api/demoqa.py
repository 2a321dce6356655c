"""The demo storefront's product questions: **dev only**, like ``/demo/viewer-tokens``.

These routes exist only when ``SOCIALPROOF_DEMO_ENABLED`` is true. They let the demo page list a
product's questions and ask and answer as the selected viewer, by calling the social service's
Q&A API (``http://127.0.0.1:SOCIALPROOF_SOCIAL_PORT``, the dev stack's) **with the service
token**, for anyone who can reach the page: exactly what a real shop must never expose (its
backend calls the social service itself, on behalf of the signed-in shopper).

- ``GET /demo/products/{id}/questions`` -> ``GET /v1/products/{id}/questions`` (newest first,
  answers ranked, verified buyers marked);
- ``POST /demo/products/{id}/questions`` ``{"user_id", "text"}`` -> ask;
- ``POST /demo/questions/{id}/answers`` ``{"user_id", "text"}`` -> answer.

The social service's status and JSON body are passed back as they are; 503 when it cannot be
reached.
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier, QaText
from services.notifier.api.deps import RateLimited
from services.notifier.settings import NotifierSettings
from socialproof.http import RETRY_AFTER_S, error_response

router = APIRouter(tags=["demo (dev only)"])
TIMEOUT_S = 5.0
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
Id = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


class DemoPostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier = Field(description="the demo viewer who asks or answers")
    text: QaText


async def forward(
    request: Request,
    service: str,
    method: str,
    path: str,
    body: dict | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Calls the dev stack's ``service`` (``social`` or ``orders``) with the service token and
    passes its status and body back; 503 when it cannot be reached. Also used by
    :mod:`.demoshop`."""
    settings: NotifierSettings = request.app.state.settings
    port = settings.social_port if service == "social" else settings.orders_port
    url = f"http://127.0.0.1:{port}{path}"
    sent = {"Authorization": f"Bearer {settings.require_service_token()}", **(headers or {})}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            answer = await client.request(method, url, json=body, headers=sent)
    except httpx.HTTPError as exc:
        return error_response(
            503,
            f"{service}_unavailable",
            f"the {service} service is unavailable ({type(exc).__name__})",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type", "application/json"),
        headers={"Cache-Control": "no-store"},
    )


async def _social(request: Request, method: str, path: str, body: dict | None = None) -> Response:
    return await forward(request, "social", method, path, body)


@router.get(
    "/demo/products/{product_id}/questions",
    summary="A product's questions (the social service's, through the demo: dev only)",
)
async def demo_questions(product_id: Id, request: Request, _: RateLimited) -> Response:
    return await _social(request, "GET", f"/v1/products/{product_id}/questions?limit=20")


@router.post(
    "/demo/products/{product_id}/questions",
    summary="Ask as a demo viewer, with the service token: demo only, never in production",
)
async def demo_ask(product_id: Id, body: DemoPostIn, request: Request, _: RateLimited) -> Response:
    return await _social(request, "POST", f"/v1/products/{product_id}/questions", body.model_dump())


@router.post(
    "/demo/questions/{question_id}/answers",
    summary="Answer as a demo viewer, with the service token: demo only, never in production",
)
async def demo_answer(
    question_id: Id, body: DemoPostIn, request: Request, _: RateLimited
) -> Response:
    return await _social(request, "POST", f"/v1/questions/{question_id}/answers", body.model_dump())
