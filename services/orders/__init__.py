"""The orders service. Run with ``socialproof serve orders``."""
