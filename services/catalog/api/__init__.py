"""The catalog's HTTP API: :mod:`.products` (the routes), :mod:`.deps` (what they take from
the app's state). The app factory is :mod:`services.catalog.app`."""
