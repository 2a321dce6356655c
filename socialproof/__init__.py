"""socialproof's runtime, imported by every service: settings, logs, metrics, Kafka and Redis
clients, the HTTP app factory, topic views, child processes and the server entry point.

It imports no tool (``tools/``, ``ops/``, ``cli/``) and no service (a test asserts it).
"""

__version__ = "0.1.0"
