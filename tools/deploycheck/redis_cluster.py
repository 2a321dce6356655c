"""The invariants of a Redis Cluster in the manifests (``deploy/k8s/components/redis-cluster``,
issue #16), as our rule ``redis-cluster``: what no scanner knows about a cluster that must keep
every slot through the loss of one pod.

A cluster node is a long-running workload whose Redis container mounts a redis.conf with
``cluster-enabled yes``. For each, the rule wants:

* a formation Job (``redis-cli --cluster create``) with ``--cluster-replicas`` of 1 or more,
  listing as many nodes (its ``NODES``) as the StatefulSet has replicas, and at least 3 masters
  (a majority of masters must vote a replica's promotion: with 2, losing one stops failover);
* persistence as ``components/redis``: an append-only file, its ``dir`` and the
  ``cluster-config-file`` (nodes.conf: the node's id, slots and epochs) on the persistent volume,
  so a restarted pod rejoins as the same node; an explicit ``cluster-node-timeout``;
* ``maxmemory-policy noeviction`` (counters are the data) and a ``maxmemory`` at most 80 % of the
  container's memory limit (room for the AOF rewrite's and the replicas' buffers: a full node
  refuses writes, which the worker retries, instead of being OOM-killed);
* a NetworkPolicy letting the nodes reach each other on the cluster bus (client port + 10000);
* a PodDisruptionBudget with at most one of its pods down, and pod anti-affinity by node
  (``kubernetes.io/hostname``), so a master and its replica do not fail together.

The single-node ``components/redis`` is ``redis-store``'s (components.py); that rule leaves
cluster nodes to this one.
"""

from __future__ import annotations

import re

from tools.deploycheck.components import _redis_config
from tools.deploycheck.manifests import (
    LONG_RUNNING,
    Obj,
    Problem,
    container_env,
    containers,
    image_repository,
    pod_labels,
    ref,
    selects,
    workloads,
)

REDIS_CLUSTER = (
    "Redis Cluster component: 3+ masters each with a replica, formed by a Job listing every node; "
    "append-only file and nodes.conf on the volume; noeviction and maxmemory within the memory "
    "limit; the bus port open between nodes; a disruption budget of one pod; anti-affinity by node"
)
RULE_ID = "redis-cluster"
MIN_MASTERS = 3
#: the share of the container's memory limit maxmemory may take
MAXMEMORY_SHARE_OF_LIMIT = 0.8
CLIENT_PORT = 6379
BUS_PORT_OFFSET = 10_000

_UNITS = {"b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_K8S_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2}
_K8S_UNITS |= {"Gi": 1024**3, "Ti": 1024**4}


def problem(where: str, message: str) -> Problem:
    return Problem("socialproof", RULE_ID, where, message)


def redis_bytes(value: str) -> int:
    """A redis.conf memory size (``700mb``, ``1gb``, ``1000000``) in bytes."""
    number, unit = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", value.strip()).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit.lower() or "b"]


def quantity_bytes(value: str) -> int:
    """A Kubernetes memory quantity (``1Gi``, ``512M``) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(value)).groups()  # type: ignore[union-attr]
    return int(number) * _K8S_UNITS[unit]


def _formation_jobs(objects: list[Obj]) -> list[tuple[Obj, Obj, str]]:
    """(Job, container, its script) for every container running ``redis-cli --cluster create``."""
    found = []
    for obj, spec in workloads(objects):
        for c in containers(spec):
            script = " ".join((c.get("command") or []) + (c.get("args") or []))
            if "--cluster create" in script:
                found.append((obj, c, script))
    return found


def _cluster_nodes(objects: list[Obj]) -> list[tuple[Obj, Obj, Obj, dict[str, str]]]:
    """(StatefulSet, pod spec, Redis container, redis.conf) of every cluster-enabled Redis."""
    nodes = []
    for obj, spec in workloads(objects):
        if obj["kind"] not in LONG_RUNNING:
            continue
        for c in containers(spec):
            if image_repository(c.get("image", "")) != "redis":
                continue
            config = _redis_config(spec, c, objects)
            if config.get("cluster-enabled") == "yes":
                nodes.append((obj, spec, c, config))
    return nodes


def _formation(obj: Obj, objects: list[Obj]) -> list[str]:
    replicas = obj["spec"].get("replicas", 1)
    jobs = _formation_jobs(objects)
    if not jobs:
        return ["no Job forms the cluster (redis-cli --cluster create)"]
    out = []
    for job, c, script in jobs:
        found = re.search(r"--cluster-replicas\s+(\d+)", script)
        per_master = int(found.group(1)) if found else 0
        if per_master < 1:
            out.append(f"{ref(job)} forms masters without replicas (--cluster-replicas 1 or more)")
            continue
        env = container_env(c, objects)
        listed = len(str(env.get("NODES", {}).get("value", "")).split())
        if listed != replicas:
            out.append(f"{ref(job)} lists {listed} nodes (NODES), the StatefulSet has {replicas}")
        if replicas % (per_master + 1) or replicas // (per_master + 1) < MIN_MASTERS:
            out.append(
                f"{replicas} pods with --cluster-replicas {per_master} are not {MIN_MASTERS}+ "
                "masters each with its replicas (a failover needs a majority of masters)"
            )
    return out


def _persistence(obj: Obj, c: Obj, config: dict[str, str]) -> list[str]:
    out = []
    for key, wanted in (("appendonly", "yes"), ("maxmemory-policy", "noeviction")):
        if config.get(key) != wanted:
            out.append(f"redis.conf {key} is {config.get(key)!r}, not {wanted!r}")
    claims = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates") or []}
    persistent = [m["mountPath"] for m in c.get("volumeMounts") or [] if m["name"] in claims]
    data_dir = config.get("dir", "")
    if data_dir not in persistent:
        out.append(f"redis.conf dir {data_dir!r} is not on a persistent volume")
    nodes_conf = config.get("cluster-config-file", "nodes.conf")
    if not nodes_conf.startswith("/"):
        nodes_conf = f"{data_dir}/{nodes_conf}"
    if not any(nodes_conf.startswith(p.rstrip("/") + "/") for p in persistent):
        out.append(
            f"cluster-config-file {nodes_conf} is not on a persistent volume: a restarted pod "
            "would come back as a new, empty node"
        )
    if "cluster-node-timeout" not in config:
        out.append("redis.conf sets no cluster-node-timeout (the failover's detection time)")
    return out


def _memory(c: Obj, config: dict[str, str]) -> list[str]:
    limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    maxmemory = redis_bytes(config.get("maxmemory", "0"))
    if not limit or not maxmemory:
        return ["maxmemory and the container's memory limit must both be set"]
    if maxmemory > MAXMEMORY_SHARE_OF_LIMIT * quantity_bytes(limit):
        return [
            f"maxmemory {config['maxmemory']} is over {MAXMEMORY_SHARE_OF_LIMIT:.0%} of the "
            f"memory limit {limit}: the node would be OOM-killed before refusing writes"
        ]
    return []


def _bus_open(obj: Obj, config: dict[str, str], objects: list[Obj]) -> list[str]:
    labels = pod_labels(obj)
    bus = int(config.get("port", CLIENT_PORT)) + BUS_PORT_OFFSET
    for policy in (o for o in objects if o.get("kind") == "NetworkPolicy"):
        if not selects(policy["spec"].get("podSelector"), labels):
            continue
        for rule in policy["spec"].get("ingress") or []:
            ports = {p.get("port") for p in rule.get("ports") or []}
            peers = [p.get("podSelector") for p in rule.get("from") or []]
            if bus in ports and any(selects(p, labels) for p in peers):
                return []
    return [f"no NetworkPolicy lets the nodes reach each other on the cluster bus port {bus}"]


def _availability(obj: Obj, spec: Obj, objects: list[Obj]) -> list[str]:
    out = []
    labels, replicas = pod_labels(obj), obj["spec"].get("replicas", 1)
    budgets = [
        p
        for p in objects
        if p.get("kind") == "PodDisruptionBudget" and selects(p["spec"].get("selector"), labels)
    ]
    one_down = [
        p
        for p in budgets
        if p["spec"].get("maxUnavailable") == 1 or p["spec"].get("minAvailable") == replicas - 1
    ]
    if not one_down:
        out.append("no PodDisruptionBudget keeps all but one of its pods up (maxUnavailable: 1)")
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []) + [
        t.get("podAffinityTerm") or {}
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    ]
    if not any(
        t.get("topologyKey") == "kubernetes.io/hostname" and selects(t.get("labelSelector"), labels)
        for t in terms
    ):
        out.append("no pod anti-affinity by node (kubernetes.io/hostname) among its own pods")
    return out


def redis_cluster(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec, c, config in _cluster_nodes(objects):
        messages = _formation(obj, objects) + _persistence(obj, c, config) + _memory(c, config)
        messages += _bus_open(obj, config, objects) + _availability(obj, spec, objects)
        out += [problem(ref(obj), m) for m in messages]
    return out
