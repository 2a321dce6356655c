"""The notifier: storefront read API and live push. Run with ``socialproof serve notifier``."""
