"""``socialproof explain PRODUCT FIGURE``: the events that make up a figure the notifier serves,
read from a Redis namespace (the one readers serve unless ``--namespace``), every page at one
instant. The same computation as ``GET /v1/proof/products/{id}/explain``
(:mod:`services.notifier.explain`), with the same user refs for the same settings, on one Redis or
a Redis Cluster (``REDIS_URL`` naming any node of one), over the namespace's recorded shards."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from rich.table import Table

from cli.common import AsJson, err, fail, load, out
from contracts import namespaces
from contracts.layout import resolve_shards
from services.notifier.explain import (
    FIGURES_HELP,
    Explainer,
    Explanation,
    FigureChanged,
    UnknownFigure,
    UserRefs,
    parse_figure,
    ref_key,
)
from services.notifier.proof import ProofReader
from services.notifier.settings import NotifierSettings
from socialproof import redis as redis_client


async def _explain(
    settings: NotifierSettings, product: str, figure: str, viewer: str | None,
    namespace: str | None, with_excluded: bool,
) -> tuple[str, Explanation]:
    redis = await redis_client.connect_store(settings)
    try:
        pointer = await redis.hgetall(namespaces.pointer_key(settings.redis_namespace))
        ns = namespace or namespaces.parse(pointer, settings.redis_namespace).active
        # its shards as recorded beside the pointer (contracts/layout.py), as the notifier reads
        cluster = isinstance(redis, AsyncRedisCluster)
        shards = resolve_shards(pointer, ns, cluster)
        reader = ProofReader(
            redis, ns, settings.default_show_in_activity_feed, settings.reviews_verified_only,
            shards=shards,
        )
        refs = UserRefs(ref_key(settings.viewer_token_secret, settings.service_token))
        explainer = Explainer(reader, refs)
        wanted = parse_figure(figure)
        return ns, await explainer.explain_all(
            product, wanted, viewer_id=viewer, with_excluded=with_excluded
        )
    finally:
        await redis.aclose()


def explain(
    product: Annotated[str, typer.Argument(help="product id")],
    figure: Annotated[str, typer.Argument(help=f"the figure's path: {FIGURES_HELP}")],
    viewer: Annotated[
        str | None, typer.Option("--viewer", help="the viewer, for friends_bought")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="default: the namespace readers serve")
    ] = None,
    excluded: Annotated[
        bool, typer.Option("--excluded/--no-excluded", help="list the events left out too")
    ] = True,
    as_json: AsJson = False,
) -> None:
    """List the events that make up a served figure, and the ones left out with the reason."""
    settings = load(NotifierSettings)
    try:
        wanted = parse_figure(figure)
    except UnknownFigure as exc:
        raise fail(exc, code=2) from None
    if wanted.needs_viewer and not viewer:
        raise fail(f"{wanted.path} is per viewer: give --viewer", code=2)
    try:
        ns, result = asyncio.run(
            _explain(settings, product, figure, viewer if wanted.needs_viewer else None,
                     namespace, excluded)
        )
    except ValueError as exc:  # no secret to key user refs with
        raise fail(exc, code=2) from None
    except FigureChanged as exc:
        raise fail(f"{exc} (the figure keeps changing; try again)") from None
    except Exception as exc:  # Redis down, and the like: one line, not a traceback
        raise fail(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    body = result.to_json()
    err.print(f"namespace {ns}, as of {body['as_of']}")
    out.print(f"{product} {result.figure} = {result.value} ({len(result.events)} events)")
    _table("counted", result.events, with_reason=False)
    if excluded:
        _table("excluded", result.excluded, with_reason=True)


def _table(title: str, entries: list[dict], *, with_reason: bool) -> None:
    if not entries:
        out.print(f"{title}: none")
        return
    table = Table(title=f"{title} ({len(entries)})")
    columns = ["occurred_at", "event_id", "user_ref", "kind", "detail"]
    if with_reason:
        columns.insert(0, "reason")
    for column in columns:
        table.add_column(column)
    shown = {*columns, "reason"}
    for entry in entries:
        detail = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in shown)
        row = {**entry, "detail": detail}
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(table)
