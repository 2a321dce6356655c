"""What the catalog's routes take from the app's state, as FastAPI dependencies: the settings,
the product and promotion tables (filled by the view of the catalog's two topics), the write
lock, the publisher and the view.

:func:`services.catalog.app.create_app` puts ``settings``, ``table``, ``promotions`` and
``write_lock`` on the state; the lifespan adds ``publisher`` and ``view``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.catalog.promotions import PromotionTable
from services.catalog.settings import CatalogSettings
from socialproof.deps import from_state
from socialproof.productview import ProductTable

SERVICE = "catalog"


Settings = Annotated[CatalogSettings, Depends(from_state("settings"))]
Table = Annotated[ProductTable, Depends(from_state("table"))]
Promotions = Annotated[PromotionTable, Depends(from_state("promotions"))]
