"""The notifier's HTTP routes (the app factory is :mod:`services.notifier.app`)."""
