"""The operators' and engineers' tools, shipped in the image and run as Kubernetes Jobs or by hand:
topic dump/load/copy/tail, dead letters, consumer groups (:mod:`ops.topics`) and the replay
rebuild of every counter (:mod:`ops.rebuild`). They use the runtime only, never a service."""
