"""The ``socialproof`` command: a thin layer over the runtime (:mod:`socialproof`), the services,
the operators' tools (:mod:`ops`) and, where they are installed, the dev tools (:mod:`tools`).
It is the only code that imports services; one module per command group."""
