"""``POST /v1/viewer-tokens``: a short-lived viewer token for the shop's backend (service token
required). The tokens themselves are :mod:`services.notifier.tokens`."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from services.notifier.schemas import ViewerTokenIn, ViewerTokenOut
from services.notifier.tokens import ViewerTokens
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ServiceAuth

router = APIRouter()


def issue(tokens: ViewerTokens, request: ViewerTokenIn) -> ViewerTokenOut:
    token, claims = tokens.mint(request.viewer_id)
    return ViewerTokenOut(
        token=token,
        viewer_id=claims.viewer_id,
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )


@router.post(
    "/v1/viewer-tokens",
    status_code=201,
    response_model=ViewerTokenOut,
    tags=["viewer tokens"],
    summary="Issue a short-lived viewer token (for the shop's backend; service token)",
    responses={**AUTH_RESPONSES, **ERROR_RESPONSES},
)
async def issue_viewer_token(
    body: ViewerTokenIn, _: ServiceAuth, request: Request
) -> ViewerTokenOut:
    return issue(request.app.state.tokens, body)
