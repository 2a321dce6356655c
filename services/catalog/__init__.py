"""The catalog service. Run with ``socialproof serve catalog``."""
