"""What the catalog's routes take from the app's state, as FastAPI dependencies: the settings,
the product table (filled by the view of the product topic), the write lock, the publisher and
the view.

:func:`services.catalog.app.create_app` puts ``settings``, ``table`` and ``write_lock`` on the
state; the lifespan adds ``publisher`` and ``view``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.catalog.settings import CatalogSettings
from socialproof.deps import from_state
from socialproof.productview import ProductTable

SERVICE = "catalog"


Settings = Annotated[CatalogSettings, Depends(from_state("settings"))]
Table = Annotated[ProductTable, Depends(from_state("table"))]
