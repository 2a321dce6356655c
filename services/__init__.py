"""The socialproof services. Each subpackage is one independent service; none imports another.

- ``catalog``: products (``socialproof serve catalog``)
- ``orders``: orders and refunds (``socialproof serve orders``)
- ``social``: friendships, reviews, shares, privacy (``socialproof serve social``) and the stream
  processor (``socialproof worker``)
- ``notifier``: the storefront-facing read API and live push (``socialproof serve notifier``)
"""
