"""``socialproof serve NAME`` and ``socialproof worker``: one production process in the foreground
(what the image's entrypoint runs)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from cli.common import load


class Service(StrEnum):
    catalog = "catalog"
    orders = "orders"
    social = "social"
    notifier = "notifier"


def serve(service: Annotated[Service, typer.Argument(help="which HTTP service")]) -> None:
    """Run one HTTP service in the foreground."""
    from socialproof.serve import serve as run_service

    if service is Service.orders:
        from services.orders.app import create_app
        from services.orders.settings import OrdersSettings

        cfg = load(OrdersSettings)
        run_service("orders", create_app, cfg, cfg.orders_port)
    elif service is Service.notifier:
        from services.notifier.app import create_app
        from services.notifier.settings import NotifierSettings

        cfg = load(NotifierSettings)
        run_service("notifier", create_app, cfg, cfg.notifier_port, cfg.notifier_processes)
    elif service is Service.catalog:
        from services.catalog.app import create_app
        from services.catalog.settings import CatalogSettings

        cfg = load(CatalogSettings)
        run_service("catalog", create_app, cfg, cfg.catalog_port)
    else:
        from services.social.app import create_app
        from services.social.settings import SocialSettings

        cfg = load(SocialSettings)
        run_service("social", create_app, cfg, cfg.social_port)


def worker() -> None:
    """Run the stream processor (a Faust worker) in the foreground."""
    from services.counters.app import run_worker
    from services.counters.settings import CountersSettings

    run_worker(load(CountersSettings))
