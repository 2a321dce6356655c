"""The social-proof stream processor (Faust worker). Run with ``socialproof worker``."""
