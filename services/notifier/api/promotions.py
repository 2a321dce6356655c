"""Share-to-unlock promotions at the storefront edge (issue #17); the reads are
:mod:`services.notifier.promotions`.

- ``GET /v1/promotions/{id}/progress?user_id=U``: U's progress as a sharer (credited buyers, the
  goal, what is left, U's rewards with their coupons, and the first names of credited buyers who
  are U's friends and share purchases with friends). Allowed with the service token (the shop's
  backend) or with U's own viewer token (the sharer's browser); any other credential is refused
  (403), a missing one is 401. The answer is never stored by a shared cache. 404 for a promotion
  the store does not know.
- ``GET /v1/products/{id}/promotions``: the product's active promotions (public, cacheable like
  the proof): title, rewards, goal, period.
- ``GET /v1/products/{id}/sharers?limit=10``: the product's top sharers by credited buyers, user
  ids and counts (service token: the shop's view; shoppers never see who shared).

Live: the viewer's own stream (``/v1/me/stream?promotions=…``, :mod:`.me`) pushes progress
changes; the product stream carries ``bought_via_shares`` with the rest of the proof.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from services.notifier.api.deps import RateLimited, rate_limit
from services.notifier.api.proof import ID_PATTERN, cached_json, max_age
from services.notifier.promotions import ProductPromotions, Progress, PromotionReader, Sharers
from services.notifier.settings import NotifierSettings
from services.notifier.tokens import InvalidViewerToken
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    ServiceAuth,
    _bearer,
)

router = APIRouter(tags=["promotions"])
Id = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Authorization"}
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "too many requests; retry after `Retry-After` s"}
}


def promotion_reader(request: Request) -> PromotionReader:
    return request.app.state.promotions


Promotions = Annotated[PromotionReader, Depends(promotion_reader)]


async def sharer_access(request: Request) -> None:
    """The service token, or a viewer token naming the ``user_id`` asked about.

    A dependency that reads the query itself, so that the credential is checked before the
    parameters: without one the answer is 401, with the wrong one 403, whatever was asked."""
    token = _bearer(request)
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "send the service token, or the sharer's own viewer token, as a bearer token",
            headers={"WWW-Authenticate": 'Bearer realm="socialproof"'},
        )
    settings: NotifierSettings = request.app.state.settings
    if hmac.compare_digest(token.encode(), settings.require_service_token().encode()):
        return
    try:
        claims = request.app.state.tokens.verify(token)
    except InvalidViewerToken as exc:
        raise ApiError(
            403,
            "forbidden",
            f"neither the service token nor a usable viewer token ({exc}); a viewer token "
            "comes from the shop's backend",
        ) from None
    if claims.viewer_id != request.query_params.get("user_id"):
        raise ApiError(403, "forbidden", "a viewer token only reads its own viewer's progress")
    await rate_limit(request)  # shoppers' browsers are rate limited, the shop's backend is not


SharerAccess = Annotated[None, Depends(sharer_access)]


def _no_store(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)


@router.get(
    "/v1/promotions/{promotion_id}/progress",
    summary="A sharer's progress in a promotion (service token, or the sharer's viewer token)",
    response_model=Progress,
    responses={
        401: {"model": ErrorBody, "description": "no bearer token"},
        403: {
            "model": ErrorBody,
            "description": "neither the service token nor the viewer token of `user_id`",
        },
        404: {"model": ErrorBody, "description": "unknown promotion"},
        **TOO_MANY,
        **ERROR_RESPONSES,
    },
)
async def progress(
    promotion_id: Id,
    request: Request,
    promotions: Promotions,
    _: SharerAccess,
    user_id: Annotated[
        str,
        Query(min_length=1, max_length=128, pattern=ID_PATTERN, description="the sharer"),
    ],
) -> Response:
    found = await promotions.progress(promotion_id, user_id)
    if found is None:
        raise ApiError(404, "not_found", f"no promotion {promotion_id!r}")
    return _no_store(found.model_dump(mode="json"))


@router.get(
    "/v1/products/{product_id}/promotions",
    summary="A product's active share-to-unlock promotions (public)",
    response_model=ProductPromotions,
    responses={
        304: {"description": "not modified (If-None-Match matched the ETag)"},
        **TOO_MANY,
        **ERROR_RESPONSES,
    },
)
async def product_promotions(
    product_id: Id, request: Request, promotions: Promotions, _: RateLimited
) -> Response:
    active = await promotions.product_promotions(product_id)
    body = ProductPromotions(product_id=product_id, promotions=active).model_dump(mode="json")
    return cached_json(request, body, private=False, max_age=max_age(request))


@router.get(
    "/v1/products/{product_id}/sharers",
    summary="A product's top sharers by buyers credited to their links (service token)",
    response_model=Sharers,
    responses={**AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def sharers(
    product_id: Id,
    promotions: Promotions,
    _: ServiceAuth,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    return _no_store((await promotions.sharers(product_id, limit)).model_dump(mode="json"))
