"""socialproof's shared runtime: settings, logging, metrics, Kafka and Redis clients, the HTTP
app factory every service uses, the dev stack and the ``socialproof`` command.

Services (``services/*``) build on this package and on ``contracts``, never on each other.
"""

__version__ = "0.1.0"
