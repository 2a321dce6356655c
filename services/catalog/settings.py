"""The catalog service's settings (``SOCIALPROOF_CATALOG_*``) on top of the shared ones."""

from __future__ import annotations

from socialproof.settings import Settings, port_field


class CatalogSettings(Settings):
    catalog_port: int = port_field("catalog")  # type: ignore[assignment]
