"""The developers' tools, never shipped in the image: the dev stack (:mod:`tools.devstack`) on
an embedded Apache Kafka (:mod:`tools.embeddedkafka`), the demo traffic simulator and load
generator (:mod:`tools.simulate`, :mod:`tools.loadgen`) and the Kubernetes manifest checks
(:mod:`tools.deploycheck`). They may import the runtime; nothing in the runtime or a service
imports them."""
