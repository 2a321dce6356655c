"""The orders service's routes, one module per resource (tagged ``orders`` unless said):

- :mod:`.orders`: ``POST /v1/orders`` (place), ``GET /v1/orders/{order_id}``;
- :mod:`.refunds`: ``POST /v1/orders/{order_id}/refunds``;
- :mod:`.cancellations`: ``POST /v1/orders/{order_id}/cancel``;
- :mod:`.coupons`: ``GET /v1/coupons/{code}`` (tagged ``coupons``), and redeeming an order's
  coupon.

Their bodies are in :mod:`services.orders.schemas`; what they share (state on ``app.state`` as
dependencies, the order lookup) in :mod:`.deps`.
"""

from __future__ import annotations

from services.orders.api import cancellations, coupons, orders, refunds

#: in the order the OpenAPI document lists them
ROUTERS = (orders.router, refunds.router, cancellations.router, coupons.router)
