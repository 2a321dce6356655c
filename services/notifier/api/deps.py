"""Request dependencies shared by the notifier's HTTP and live endpoints: the reader, per-client
rate limiting, the viewer named by a viewer token, product-list parsing, and adding a viewer's
friend data to public proof states."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import TypeAdapter, ValidationError

from contracts.events import Identifier
from services.notifier.proof import ProofReader
from services.notifier.ratelimit import RateLimiter
from services.notifier.tokens import InvalidViewerToken, ViewerToken
from socialproof.http import ApiError, FieldError, _bearer

MAX_PRODUCTS = 100
_ids = TypeAdapter(list[Identifier])


async def get_reader(request: Request) -> ProofReader:
    return request.app.state.reader


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def rate_limit(request: Request) -> None:
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.acquire(client_key(request))
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            "too many requests from this client; slow down",
            headers={"Retry-After": limiter.retry_after_header(wait)},
        )


def viewer_from(request: Request, query_token: str | None) -> str | None:
    """The viewer a request's token names; None without a token; 401 for a bad one."""
    claims = viewer_claims_from(request, query_token)
    return None if claims is None else claims.viewer_id


def viewer_claims_from(request: Request, query_token: str | None) -> ViewerToken | None:
    """The claims of a request's viewer token (viewer, expiry); None without a token; 401 for a
    bad one."""
    raw = _bearer(request) or query_token
    if raw is None:
        return None
    try:
        return request.app.state.tokens.verify(raw)
    except InvalidViewerToken as exc:
        raise ApiError(
            401,
            "invalid_viewer_token",
            f"the viewer token is refused ({exc}); ask the shop's backend for a new one",
            headers={"WWW-Authenticate": 'Bearer realm="socialproof-viewer"'},
        ) from None


async def get_viewer(
    request: Request,
    viewer_token: Annotated[
        str | None,
        Query(description="viewer token, for clients that cannot send an Authorization header"),
    ] = None,
) -> str | None:
    return viewer_from(request, viewer_token)


Reader = Annotated[ProofReader, Depends(get_reader)]
Viewer = Annotated[str | None, Depends(get_viewer)]
RateLimited = Annotated[None, Depends(rate_limit)]


def parse_product_list(raw: str, field: str = "products") -> list[str]:
    """'p1,p2' -> ['p1', 'p2'], deduplicated in order; 422 naming the field when invalid."""
    ids = list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if not ids:
        problem = "give at least one product id"
    elif len(ids) > MAX_PRODUCTS:
        problem = f"at most {MAX_PRODUCTS} product ids"
    else:
        try:
            return _ids.validate_python(ids)
        except ValidationError as exc:
            bad = exc.errors()[0]
            problem = f"product id #{bad['loc'][0]} is invalid: {bad['msg']}"
    raise ApiError(
        422,
        "validation_failed",
        f"invalid request: {field}: {problem}",
        fields=[FieldError(field=field, message=problem, type="value_error")],
    )


async def with_friends(reader: ProofReader, states: list[dict], viewer: str | None) -> list[dict]:
    """Adds ``friends_bought`` for ``viewer`` to copies of public states (never to the shared
    ones: the hub hands the same dict to every connection)."""
    if viewer is None or not states:
        return states
    if len(states) == 1:  # the common case (one product page): no task to schedule
        friends = [await reader.friends_bought(viewer, states[0]["product_id"])]
    else:
        friends = await asyncio.gather(
            *(reader.friends_bought(viewer, state["product_id"]) for state in states)
        )
    return [
        {**state, "friends_bought": {"count": count, "names": list(names)}}
        for state, (count, names) in zip(states, friends, strict=True)
    ]
