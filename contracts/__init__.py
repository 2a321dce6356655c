"""The one shared definition of every socialproof event and topic.

- :mod:`contracts.events`: Pydantic v2 event models in the integration-event envelope.
- :mod:`contracts.topics`: the typed topic registry (name, key, value types, partitions, policy).
- :mod:`contracts.codec`: JSON wire encoding and classified decoding.
- :mod:`contracts.schemas`: JSON Schemas generated from the models
  (``socialproof contracts generate``; a test fails when they are stale).

Services import from here and never from each other.
"""
