"""``GET /v1/proof/products/{id}/explain?figure=…``: the events that make up a served figure (for
the shop and auditors; service token). The computation is :mod:`services.notifier.explain`."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier
from services.notifier.api.deps import Reader
from services.notifier.api.proof import ID_PATTERN
from services.notifier.explain import (
    DEFAULT_LIMIT,
    FIGURES_HELP,
    MAX_LIMIT,
    Explainer,
    FigureChanged,
    InvalidCursor,
    UnknownFigure,
    UserRefs,
    parse_figure,
    ref_key,
)
from services.notifier.proof import ProofReader
from socialproof.http import (
    AUTH_RESPONSES,
    ERROR_RESPONSES,
    ApiError,
    ErrorBody,
    FieldError,
    ServiceAuth,
)

router = APIRouter()


class ExplainedEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str | None = Field(description="the event's id (null for facts older than ids)")
    occurred_at: str | None = Field(default=None, description="event time, ISO 8601 UTC")
    user_ref: str | None = Field(
        default=None, description="a stable pseudonym of the user (keyed hash), never the id"
    )
    kind: str | None = Field(default=None, examples=["purchase", "review", "share", "question"])


class ExcludedEvent(ExplainedEvent):
    reason: str = Field(
        examples=[
            "outside_window", "repeat_purchase", "refunded", "no_consent", "not_verified",
            "deleted", "unanswered", "no_buyer_answer", "self_referral", "unknown_link",
            "not_first_touch",
        ]
    )


class ExplanationOut(BaseModel):
    figure: str = Field(examples=["bought.24h"])
    value: int = Field(description="the figure the proof answer serves at `as_of`")
    as_of: str = Field(description="the instant windows are evaluated at (pinned by the cursor)")
    events: list[ExplainedEvent] = Field(description="counted events of this page")
    excluded: list[ExcludedEvent] = Field(description="events of this page not counted, and why")
    next: str | None = Field(description="pass as `cursor` for the next page; null on the last")


def explainer(request: Request, reader: ProofReader) -> Explainer:
    """One per app and reader (made on first use: the script and the ref key)."""
    state = request.app.state
    current = getattr(state, "explainer", None)
    if current is None or current.reader is not reader:
        settings = state.settings
        key = ref_key(settings.viewer_token_secret, settings.service_token)
        current = state.explainer = Explainer(reader, UserRefs(key))
    return current


def _bad(field: str, problem: str) -> ApiError:
    return ApiError(
        400, f"invalid_{field}", f"{field}: {problem}",
        fields=[FieldError(field=field, message=problem, type="value_error")],
    )


@router.get(
    "/v1/proof/products/{product_id}/explain",
    tags=["proof"],
    summary="The events that make up a served figure, and the ones left out (service token)",
    description=f"Figures: {FIGURES_HELP}. `value` equals the number of `events` over all "
    "pages and the figure in the proof answer at `as_of`. Events show event ids, event times "
    "and pseudonymous user refs, never user ids or names; under bought_via_shares a purchase "
    "also names the share it came through (share_id, sharer_ref). Erased users' events and duplicates "
    "leave no facts in the store and are not listed.",
    responses={
        200: {"model": ExplanationOut},
        400: {"model": ErrorBody, "description": "unknown `figure`, no `viewer_id`, bad `cursor`"},
        409: {"model": ErrorBody, "description": "the figure changed between pages; start again"},
        **AUTH_RESPONSES,
        **{k: v for k, v in ERROR_RESPONSES.items() if k != 400},
    },
)
async def explain_figure(
    product_id: Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)],
    request: Request,
    _: ServiceAuth,
    reader: Reader,
    figure: Annotated[str, Query(max_length=64, description="the figure's path in the proof "
                                 "answer, e.g. bought.24h")],
    viewer_id: Annotated[
        Identifier | None, Query(description="the viewer, for friends_bought")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="`next` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    excluded: Annotated[
        bool, Query(description="false: list the counted events only (faster for big sets)")
    ] = True,
) -> Any:
    try:
        wanted = parse_figure(figure)
    except UnknownFigure as exc:
        raise _bad("figure", str(exc)) from None
    if wanted.needs_viewer and viewer_id is None:
        raise _bad("viewer_id", f"{wanted.path} is per viewer: give viewer_id")
    try:
        page = await explainer(request, reader).explain(
            product_id,
            wanted,
            viewer_id=viewer_id if wanted.needs_viewer else None,
            cursor=cursor,
            limit=limit,
            with_excluded=excluded,
        )
    except InvalidCursor as exc:
        raise _bad("cursor", str(exc)) from None
    except FigureChanged as exc:
        raise ApiError(409, "figure_changed", str(exc)) from None
    return Response(
        orjson.dumps(page.to_json()), media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
