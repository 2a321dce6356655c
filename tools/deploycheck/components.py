"""The invariants of the Kafka and Redis components (``deploy/k8s/components``), as our rules
``kafka-cluster`` and ``redis-store``: no scanner knows what Strimzi's resources must agree on, nor
that socialproof's counters need one Redis that never evicts a key and keeps an append-only file
on its volume. The external-Redis layout has no Redis workload, so ``redis-store`` has nothing to
check there.
"""

from __future__ import annotations

from tools.deploycheck.manifests import (
    LONG_RUNNING,
    Obj,
    Problem,
    containers,
    image_repository,
    ref,
    workloads,
)

KAFKA_CLUSTER = (
    "Kafka component: topics only from KafkaTopic resources of a Kafka in the manifests, "
    "replication within the brokers, one broker may be down"
)
REDIS_STORE = (
    "Redis component: one replica (one store behind one Service), append-only file, noeviction, "
    "its data directory on a persistent volume (a Redis Cluster's nodes: rule redis-cluster)"
)

#: Apache Kafka's defaults for the broker settings the rule reads
KAFKA_DEFAULTS = {
    "auto.create.topics.enable": True,
    "default.replication.factor": 1,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "min.insync.replicas": 1,
    "transaction.state.log.min.isr": 2,
}
REPLICATION_FACTORS = (
    "default.replication.factor",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
)


def problem(rule_id: str, where: str, message: str) -> Problem:
    return Problem("socialproof", rule_id, where, message)


def _min_isr_problem(isr: int, replicas: int, key: str = "min.insync.replicas") -> str | None:
    """acks=all needs min.insync.replicas in sync; with more than one replica, one broker must be
    able to go down (a rolling restart) without stopping writes."""
    if not 1 <= isr <= max(1, replicas - 1):
        return f"{key} {isr} with {replicas} replicas: writes stop when a broker is down"
    return None


def kafka_cluster(objects: list[Obj]) -> list[Problem]:
    kafkas = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Kafka"}
    brokers = {
        name: sum(
            p["spec"].get("replicas", 0)
            for p in objects
            if p.get("kind") == "KafkaNodePool"
            and (p["metadata"].get("labels") or {}).get("strimzi.io/cluster") == name
            and "broker" in (p["spec"].get("roles") or [])
        )
        for name in kafkas
    }
    out = []
    for name, kafka in kafkas.items():
        where, n = ref(kafka), brokers[name]
        config = {**KAFKA_DEFAULTS, **(kafka["spec"]["kafka"].get("config") or {})}
        if str(config["auto.create.topics.enable"]).lower() != "false":
            out.append(problem("kafka-cluster", where, "auto.create.topics.enable is not false"))
        for key in REPLICATION_FACTORS:
            if int(config[key]) > n:
                message = f"{key} {config[key]} > {n} brokers"
                out.append(problem("kafka-cluster", where, message))
        for isr, factor in (
            ("min.insync.replicas", "default.replication.factor"),
            ("transaction.state.log.min.isr", "transaction.state.log.replication.factor"),
        ):
            if message := _min_isr_problem(int(config[isr]), int(config[factor]), isr):
                out.append(problem("kafka-cluster", where, message))
    for topic in (o for o in objects if o.get("kind") == "KafkaTopic"):
        where = ref(topic)
        cluster = (topic["metadata"].get("labels") or {}).get("strimzi.io/cluster")
        if cluster not in kafkas:
            out.append(problem("kafka-cluster", where, f"no Kafka {cluster!r} in the manifests"))
            continue
        replicas = topic["spec"]["replicas"]
        if replicas > brokers[cluster]:
            message = f"replicas {replicas} > {brokers[cluster]} brokers"
            out.append(problem("kafka-cluster", where, message))
        config = topic["spec"].get("config") or {}
        default_isr = (kafkas[cluster]["spec"]["kafka"].get("config") or {}).get(
            "min.insync.replicas", KAFKA_DEFAULTS["min.insync.replicas"]
        )
        if message := _min_isr_problem(
            int(config.get("min.insync.replicas", default_isr)), replicas
        ):
            out.append(problem("kafka-cluster", where, message))
    return out


def _redis_config(spec: Obj, container: Obj, objects: list[Obj]) -> dict[str, str]:
    """The redis.conf directives of the ConfigMaps mounted into the Redis container."""
    mounted = {m["name"] for m in container.get("volumeMounts") or []}
    config: dict[str, str] = {}
    for volume in spec.get("volumes") or []:
        if volume["name"] in mounted and "configMap" in volume:
            cm = next(
                (
                    o
                    for o in objects
                    if o.get("kind") == "ConfigMap"
                    and o["metadata"]["name"] == volume["configMap"]["name"]
                ),
                {},
            )
            for text in (cm.get("data") or {}).values():
                for line in text.splitlines():
                    key, _, value = line.strip().partition(" ")
                    if key and not key.startswith("#"):
                        config[key.lower()] = value.strip().strip('"')
    return config


def redis_store(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec in workloads(objects):
        for c in containers(spec):
            if image_repository(c.get("image", "")) != "redis":
                continue
            config = _redis_config(spec, c, objects)
            if obj["kind"] not in LONG_RUNNING or config.get("cluster-enabled") == "yes":
                continue  # a cluster's nodes, or a Job using redis-cli: rule redis-cluster
            where = ref(obj)
            replicas = obj["spec"].get("replicas", 1)
            if replicas != 1:
                message = f"{replicas} replicas are {replicas} separate stores behind one Service"
                out.append(problem("redis-store", where, message))
            for key, wanted in (("appendonly", "yes"), ("maxmemory-policy", "noeviction")):
                if config.get(key) != wanted:
                    message = f"redis.conf {key} is {config.get(key)!r}, not {wanted!r}"
                    out.append(problem("redis-store", where, message))
            claims = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates") or []}
            persistent = {
                m["mountPath"] for m in c.get("volumeMounts") or [] if m["name"] in claims
            }
            if config.get("dir") not in persistent:
                message = f"redis.conf dir {config.get('dir')!r} is not on a persistent volume"
                out.append(problem("redis-store", where, message))
    return out
