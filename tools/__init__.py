"""Tools that ship with socialproof but are not part of the running service."""
