"""The read API: a product's social proof, many products' at once, trending, recent activity.

Public and rate limited per client; answers carry a weak ETag over the content and
Cache-Control (``private`` with a viewer token), and a matching ``If-None-Match`` gets 304. The
single-product read answers from the cache (:mod:`services.notifier.cache`), rendered once per
answer; under ``socialproof serve`` most of its cache hits are answered before they reach this
module, byte for byte the same (:mod:`services.notifier.fastpath`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.notifier.api.deps import RateLimited, Reader, Viewer, parse_product_list, with_friends
from services.notifier.cache import CachedProofs, Rendered, cache_control, etag_of
from services.notifier.fastpath import etags
from services.notifier.schemas import ProofList, ProofOut
from socialproof.http import ERROR_RESPONSES, ErrorBody

router = APIRouter()
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"

RATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "not modified (If-None-Match matched the ETag)"},
    401: {"model": ErrorBody, "description": "the viewer token is expired, tampered or not one"},
    429: {"model": ErrorBody, "description": "too many requests; retry after `Retry-After` s"},
    **ERROR_RESPONSES,
}


# --- caching -------------------------------------------------------------------------------------


def cached_json(request: Request, body: Any, *, private: bool, max_age: int) -> Response:
    """JSON with a weak ETag over the content (``as_of`` excluded: it changes every read) and
    Cache-Control; 304 when the client already has it."""
    return answer(request, orjson.dumps(body), etag_of(body), cache_control(private, max_age))


def answer(request: Request, content: bytes, etag: str, control: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": control, "Vary": "Authorization"}
    if etag in etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type="application/json", headers=headers)


def answer_rendered(request: Request, rendered: Rendered) -> Response:
    """An answer rendered at fill time (:mod:`services.notifier.cache`)."""
    return answer(request, rendered.body, rendered.etag, rendered.cache_control)


def max_age(request: Request) -> int:
    """Cache-Control max-age of public answers (``SOCIALPROOF_PUBLIC_MAX_AGE_S``)."""
    return request.app.state.settings.public_max_age_s


def trending_json(entries: Any) -> list[dict]:
    """The reader's trending entries as JSON objects, best first, with their rank."""
    out = []
    for rank, entry in enumerate(entries, start=1):
        item = entry.model_dump(mode="json") if isinstance(entry, BaseModel) else dict(entry)
        out.append({"rank": rank, **item})
    return out


def _item_json(item: Any) -> dict:
    return item.model_dump(mode="json") if isinstance(item, BaseModel) else dict(item)


# --- routes --------------------------------------------------------------------------------------


@router.get(
    "/v1/proof/products/{product_id}",
    tags=["proof"],
    summary="A product's social proof (zeros for a product nobody bought yet)",
    responses={200: {"model": ProofOut}, **RATE_RESPONSES},
)
async def product_proof(
    product_id: Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)],
    request: Request,
    viewer: Viewer,
    _: RateLimited,
) -> Response:
    proofs: CachedProofs = request.app.state.proofs
    if viewer is None:
        (rendered,) = await proofs.public([product_id])
    else:
        rendered = await proofs.personal(viewer, product_id)
    return answer_rendered(request, rendered)


@router.get(
    "/v1/proof/products",
    tags=["proof"],
    summary="Social proof of up to 100 products at once (listing pages)",
    responses={200: {"model": ProofList}, **RATE_RESPONSES},
)
async def products_proof(
    request: Request,
    reader: Reader,
    viewer: Viewer,
    _: RateLimited,
    ids: Annotated[str, Query(description="comma-separated product ids (1..100)")],
) -> Response:
    product_ids = parse_product_list(ids, field="ids")
    states = await with_friends(reader, await request.app.state.read_states(product_ids), viewer)
    return cached_json(
        request, {"products": states}, private=viewer is not None, max_age=max_age(request)
    )


@router.get(
    "/v1/trending",
    tags=["proof"],
    summary="Products ranked by weighted recent activity, best first",
    responses=RATE_RESPONSES,
)
async def trending(
    request: Request,
    reader: Reader,
    _: RateLimited,
    limit: Annotated[int, Query(ge=1, le=50)] = 50,
) -> Response:
    entries = trending_json(await reader.trending(limit=limit))
    return cached_json(request, {"products": entries}, private=False, max_age=max_age(request))


@router.get(
    "/v1/activity",
    tags=["proof"],
    summary="Recent activity on some products, newest first (first names of users who allow it)",
    responses=RATE_RESPONSES,
)
async def activity(
    request: Request,
    reader: Reader,
    _: RateLimited,
    products: Annotated[str, Query(description="comma-separated product ids (1..100)")],
    limit: Annotated[int, Query(ge=1, le=20)] = 20,
) -> Response:
    product_ids = parse_product_list(products)
    feeds = await asyncio.gather(*(reader.activity(p, limit=limit) for p in product_ids))
    items = [
        {"product_id": product_id, **_item_json(item)}
        for product_id, feed in zip(product_ids, feeds, strict=True)
        for item in feed
    ]
    items.sort(key=lambda item: str(item.get("occurred_at", "")), reverse=True)
    return cached_json(request, {"items": items[:limit]}, private=False, max_age=max_age(request))
