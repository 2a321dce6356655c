"""What the notifier serves to browsers besides JSON: the embeddable widget and the demo storefront.

- ``GET /widget.js``: a shop adds ``<script src="…/widget.js" data-product="p1"></script>`` and
  gets a live badge (see ``static/widget.js`` for the attributes). Always served; no external CDN.
  It is one script made of two sources: ``static/widget.js`` (badges, share cards) with
  ``static/widget-experiments.js`` (badge experiments, interaction beacons, the visitor id:
  issue #18) put inside its closure where it marks the place, and the settings' defaults (the
  count threshold, whether interactions are tracked: ``SOCIALPROOF_INTERACTION_TRACKING``).
- The demo storefront, only when ``SOCIALPROOF_DEMO_ENABLED=true`` (``make run`` sets it):
  ``/`` redirects to ``/demo``; ``/demo`` is a shop page with product cards and live badges, a
  viewer switcher, a recent-activity ticker, a trending strip and the viewer's own notifications
  (``/v1/me/stream``), buy buttons that pass on a referral link's ``?ref=`` token and a
  share-to-unlock card in the product page (:mod:`.demoshop`); ``/demo/catalog`` is the demo
  catalog the traffic simulator fills: ``static/demo-catalog.json`` (the simulator's default
  seed) or the file ``SOCIALPROOF_DEMO_CATALOG_PATH`` names (``make run`` writes one for its
  seed with ``socialproof simulate --write-catalog``).
  ``POST /demo/viewer-tokens`` issues viewer tokens **without the service token** so that the
  page can switch viewers; that is exactly what a real shop must never expose, which is why none
  of these routes exists unless the setting is on, and the notifier logs a warning when it is.

The files are in ``services/notifier/static/``, read once when the app is made (:func:`assets`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.notifier.api.deps import RateLimited
from services.notifier.api.tokens import issue
from services.notifier.schemas import ViewerTokenIn, ViewerTokenOut
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent.parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

#: the widget's route, always there
router = APIRouter()
#: the demo's routes, only when ``SOCIALPROOF_DEMO_ENABLED`` is true
demo_router = APIRouter()

Asset = tuple[bytes, str, str]  # body, ETag, media type


@dataclass(frozen=True)
class Assets:
    """What these routes serve, read and rendered once when the app is made
    (``app.state.storefront``)."""

    widget: Asset
    demo: dict[str, Asset] = field(default_factory=dict)  # only with the demo on
    catalog: bytes = b""  # only with the demo on


def assets(settings: NotifierSettings) -> Assets:
    """The widget (with its experiments part and the settings' defaults) and, with the demo on, the demo's pages and catalog
    (and a warning in the log: the demo issues viewer tokens without auth)."""
    defaults = orjson.dumps(
        {
            "minCount": settings.widget_min_count,
            "tracking": settings.interaction_tracking,
        }
    ).decode()
    experiments = (STATIC / "widget-experiments.js").read_text(encoding="utf-8")
    widget = _asset(
        "widget.js",
        {"/*SOCIALPROOF_DEFAULTS*/{}": defaults, "/*SOCIALPROOF_EXPERIMENTS*/": experiments},
    )
    if not settings.demo_enabled:
        return Assets(widget)

    log.warning(
        "demo storefront enabled: /demo/viewer-tokens issues viewer tokens without auth and "
        "/demo/products/*/questions, /demo/products/*/shares and /demo/orders ask, answer, "
        "share and buy with the service token; never enable "
        "SOCIALPROOF_DEMO_ENABLED outside development"
    )
    pages = {name: _asset(name) for name in ("demo.html", "demo.js", "demo.css")}
    catalog_file = Path(settings.demo_catalog_path) if settings.demo_catalog_path else None
    catalog = orjson.dumps(
        orjson.loads((catalog_file or STATIC / "demo-catalog.json").read_bytes())
    )
    return Assets(widget, pages, catalog)


def _asset(name: str, replacements: dict[str, str] | None = None) -> Asset:
    text = (STATIC / name).read_text(encoding="utf-8")
    for placeholder, value in (replacements or {}).items():
        if text.count(placeholder) != 1:  # an edit lost (or doubled) the mark
            raise ValueError(f"{name} must contain {placeholder} exactly once")
        text = text.replace(placeholder, value)
    body = text.encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    media = MEDIA_TYPES[Path(name).suffix] + "; charset=utf-8"
    return body, etag, media


def _served(request: Request) -> Assets:
    return request.app.state.storefront


def _serve(request: Request, asset: Asset, cache: str) -> Response:
    body, etag, media = asset
    headers = {"ETag": etag, "Cache-Control": cache}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


@router.get(
    "/widget.js",
    tags=["storefront"],
    summary="The embeddable social-proof badge",
    response_class=Response,
    responses={
        200: {"content": {"text/javascript": {}}, "description": "the widget script"},
        304: {"description": "not modified (ETag)"},
    },
)
async def widget_js(request: Request) -> Response:
    return _serve(request, _served(request).widget, "public, max-age=300")


@demo_router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/demo")


@demo_router.get(
    "/demo",
    tags=["demo (dev only)"],
    summary="The demo storefront",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "the demo page"}},
)
async def demo_page(request: Request) -> Response:
    return _serve(request, _served(request).demo["demo.html"], "no-cache")


@demo_router.get("/demo/demo.js", include_in_schema=False)
async def demo_js(request: Request) -> Response:
    return _serve(request, _served(request).demo["demo.js"], "no-cache")


@demo_router.get("/demo/demo.css", include_in_schema=False)
async def demo_css(request: Request) -> Response:
    return _serve(request, _served(request).demo["demo.css"], "no-cache")


@demo_router.get("/demo/catalog", tags=["demo (dev only)"], summary="Demo products and viewers")
async def demo_catalog_json(request: Request) -> Response:
    return Response(_served(request).catalog, media_type="application/json")


@demo_router.post(
    "/demo/viewer-tokens",
    status_code=201,
    response_model=ViewerTokenOut,
    tags=["demo (dev only)"],
    summary="Viewer token without the service token: demo only, never in production",
)
async def demo_viewer_token(
    body: ViewerTokenIn, request: Request, _: RateLimited
) -> ViewerTokenOut:
    return issue(request.app.state.tokens, body)
