"""The socialproof services. Each subpackage is one independent deployment; none imports another.

- ``catalog``: products (``socialproof serve catalog``)
- ``orders``: orders and refunds (``socialproof serve orders``)
- ``social``: friendships, reviews, shares, privacy (``socialproof serve social``)
- ``counters``: the stream worker that turns every service's events into counters in Redis
  (``socialproof worker``)
- ``notifier``: the storefront-facing read API and live push (``socialproof serve notifier``)
"""
