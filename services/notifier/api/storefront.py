"""What the notifier serves to browsers besides JSON: the embeddable widget and the demo storefront.

- ``GET /widget.js``: a shop adds ``<script src="…/widget.js" data-product="p1"></script>`` and
  gets a live badge (see ``static/widget.js`` for the attributes). Always served; no external CDN.
- The demo storefront, only when ``SOCIALPROOF_DEMO_ENABLED=true`` (``make run`` sets it):
  ``/`` redirects to ``/demo``; ``/demo`` is a shop page with product cards and live badges, a
  viewer switcher, a recent-activity ticker and a trending strip; ``/demo/catalog`` is the demo
  catalog the traffic simulator fills: ``static/demo-catalog.json`` (the simulator's default
  seed) or the file ``SOCIALPROOF_DEMO_CATALOG_PATH`` names (``make run`` writes one for its
  seed with ``socialproof simulate --write-catalog``).
  ``POST /demo/viewer-tokens`` issues viewer tokens **without the service token** so that the
  page can switch viewers; that is exactly what a real shop must never expose, which is why none
  of these routes exists unless the setting is on, and the notifier logs a warning when it is.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.notifier.api.deps import RateLimited
from services.notifier.settings import NotifierSettings
from services.notifier.tokens import ViewerTokenIn, ViewerTokenOut, issue

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent.parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _asset(name: str, replacements: dict[str, str] | None = None) -> tuple[bytes, str, str]:
    text = (STATIC / name).read_text(encoding="utf-8")
    for placeholder, value in (replacements or {}).items():
        text = text.replace(placeholder, value)
    body = text.encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    media = MEDIA_TYPES[Path(name).suffix] + "; charset=utf-8"
    return body, etag, media


def _serve(request: Request, asset: tuple[bytes, str, str], cache: str) -> Response:
    body, etag, media = asset
    headers = {"ETag": etag, "Cache-Control": cache}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media, headers=headers)


def install(app: FastAPI, settings: NotifierSettings) -> None:
    defaults = orjson.dumps({"minCount": settings.widget_min_count}).decode()
    widget = _asset("widget.js", {"/*SOCIALPROOF_DEFAULTS*/{}": defaults})

    @app.get(
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
        return _serve(request, widget, "public, max-age=300")

    if not settings.demo_enabled:
        return

    log.warning(
        "demo storefront enabled: /demo/viewer-tokens issues viewer tokens without auth; "
        "never enable SOCIALPROOF_DEMO_ENABLED outside development"
    )
    assets = {name: _asset(name) for name in ("demo.html", "demo.js", "demo.css")}
    catalog_file = Path(settings.demo_catalog_path) if settings.demo_catalog_path else None
    catalog = orjson.dumps(orjson.loads((catalog_file or STATIC / "demo-catalog.json").read_bytes()))

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/demo")

    @app.get(
        "/demo",
        tags=["demo (dev only)"],
        summary="The demo storefront",
        response_class=Response,
        responses={200: {"content": {"text/html": {}}, "description": "the demo page"}},
    )
    async def demo_page(request: Request) -> Response:
        return _serve(request, assets["demo.html"], "no-cache")

    @app.get("/demo/demo.js", include_in_schema=False)
    async def demo_js(request: Request) -> Response:
        return _serve(request, assets["demo.js"], "no-cache")

    @app.get("/demo/demo.css", include_in_schema=False)
    async def demo_css(request: Request) -> Response:
        return _serve(request, assets["demo.css"], "no-cache")

    @app.get("/demo/catalog", tags=["demo (dev only)"], summary="Demo products and viewers")
    async def demo_catalog_json() -> Response:
        return Response(catalog, media_type="application/json")

    @app.post(
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
