"""Experiment results and the merchant insights page (issue #18).

With the service token (the shop's backend, or the merchant's browser on the page below):

- ``GET /v1/experiments/{id}/results``: per variant visitors, impressions, clicks, dismissals,
  purchases, conversions, conversion rate and the uplift over the control with its 95 %
  interval; the sample-ratio-mismatch check (``srm_warning``, ``srm_p_value``), the sample a
  verdict needs, the verdict in plain English and Spanish, the method, the cumulative conversion
  rate per day and the funnel per product. ``_`` is the shop's plain badge funnel (interactions
  outside any experiment). 404 names an unknown experiment; 503 when the serving store is down.
  The figures: :mod:`services.notifier.experiment_results`; the statistics:
  :mod:`services.notifier.experiment_stats`.
- ``GET /v1/experiments/{id}/results.csv``: the same numbers as CSV (a download).

The page, public (it holds no data and no secret; the merchant pastes the service token into its
login form, the page keeps it in ``sessionStorage`` for the tab and sends it as a bearer token):

- ``GET /insights`` (``static/insights.html``, ``insights.js``, ``insights.css``): the
  experiments, each with its variants side by side, the uplift intervals drawn, the conversion
  rate over time as a chart, the verdict, the SRM warning, the funnel per product and a CSV
  download; English and Spanish (``?lang=es``, or the browser's language). Served with a
  Content-Security-Policy allowing only this origin's scripts, styles and requests, and no
  framing: a page that handles the service token must not run anyone else's script.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path as FilePath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from contracts.views import NO_EXPERIMENT, NO_EXPERIMENT_VARIANT
from services.notifier import experiment_results as results
from services.notifier.api.experiments import NOT_FOUND, lookup, registry_of
from services.notifier.experiments import ExperimentState
from socialproof.http import AUTH_RESPONSES, ERROR_RESPONSES, ApiError, ServiceAuth

router = APIRouter(tags=["insights"])
STATIC = FilePath(__file__).parent.parent / "static"
PAGE_FILES = {
    "insights.html": "text/html",
    "insights.js": "text/javascript",
    "insights.css": "text/css",
}
NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Authorization"}
#: the page's own origin only; inline SVG drawn by its script needs no exception
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

ResultsId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^(_|[A-Za-z0-9][A-Za-z0-9._:@-]*)$",
        description="experiment id, or `_` for the shop's plain badge funnel (no experiment)",
    ),
]
RESULTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    **AUTH_RESPONSES,
    503: ERROR_RESPONSES[503],
}


async def experiment_results(request: Request, experiment_id: str) -> dict:
    """The results body; 404 for an unknown experiment (also after the view caught up)."""
    state: ExperimentState | None = None
    if experiment_id != NO_EXPERIMENT:
        state = await lookup(registry_of(request), experiment_id)
        if state is None:
            raise ApiError(404, "not_found", f"no experiment {experiment_id}")
    now = datetime.now(UTC)
    series = results.points(results.series_start(state, now), now)
    names = (
        [v.name for v in state.fields.variants] if state is not None else [NO_EXPERIMENT_VARIANT]
    )
    layout = request.app.state.reader.layout  # follows the active namespace after a rebuild
    snapshot = await results.read(request.app.state.redis, layout, experiment_id, names, series)
    return results.build(state, snapshot, series, now)


@router.get(
    "/v1/experiments/{experiment_id}/results",
    summary="An experiment's results per variant: funnel, conversion, uplift with its 95 % "
    "interval, sample-ratio check, verdict (service token)",
    responses=RESULTS_RESPONSES,
)
async def get_results(experiment_id: ResultsId, _: ServiceAuth, request: Request) -> Response:
    body = await experiment_results(request, experiment_id)
    return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)


@router.get(
    "/v1/experiments/{experiment_id}/results.csv",
    summary="The same results as CSV: per variant, per product and variant, per day (service "
    "token)",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the results, one row per figure set"},
        **RESULTS_RESPONSES,
    },
)
async def get_results_csv(experiment_id: ResultsId, _: ServiceAuth, request: Request) -> Response:
    body = await experiment_results(request, experiment_id)
    name = re.sub(r"[^A-Za-z0-9._-]", "-", experiment_id)
    return Response(
        results.to_csv(body),
        media_type="text/csv; charset=utf-8",
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="experiment-{name}-results.csv"',
        },
    )


@cache
def page_asset(name: str) -> tuple[bytes, str, str]:
    """A file of the page, read once: body, ETag, media type."""
    body = (STATIC / name).read_bytes()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    return body, etag, PAGE_FILES[name] + "; charset=utf-8"


def serve(request: Request, name: str) -> Response:
    body, etag, media = page_asset(name)
    headers = {**PAGE_HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


@router.get(
    "/insights",
    summary="The merchant insights page (log in with the service token)",
    response_class=Response,
    responses={
        200: {"content": {"text/html": {}}, "description": "the page"},
        304: {"description": "not modified (ETag)"},
    },
)
async def insights_page(request: Request) -> Response:
    return serve(request, "insights.html")


@router.get("/insights/insights.js", include_in_schema=False)
async def insights_js(request: Request) -> Response:
    return serve(request, "insights.js")


@router.get("/insights/insights.css", include_in_schema=False)
async def insights_css(request: Request) -> Response:
    return serve(request, "insights.css")
