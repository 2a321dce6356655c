"""The notifier's HTTP API, one module per part, each an ``APIRouter`` that
:func:`services.notifier.app.create_app` includes:

- :mod:`.proof`: the read API (a product's proof, many at once, trending, activity);
- :mod:`.tokens`: viewer tokens for the shop's backend;
- :mod:`.live`: live push, Server-Sent Events and WebSocket;
- :mod:`.me`: the viewer's own notifications, Server-Sent Events (viewer token required);
- :mod:`.beacons`: the widget's badge interactions, published as events;
- :mod:`.experiments`: A/B experiments on badges and visitors' assignments;
- :mod:`.insights`: experiment results and the merchant insights page;
- :mod:`.storefront`: the widget and, only when enabled, the demo storefront;
- :mod:`.deps`: what they share (the reader, rate limiting, the viewer, product lists).

Routes read the service's state from ``app.state``; the hottest read mostly never reaches them
(:mod:`services.notifier.fastpath`).
"""
