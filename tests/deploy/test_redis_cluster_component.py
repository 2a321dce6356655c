"""components/redis-cluster (issue #16): the prod overlay built with it in place of
components/redis passes the whole deploy check (schemas, checkov, every rule of ours), renders
what the runbook describes, and the rule ``redis-cluster`` fails on each way of breaking it.
(The formation Job's script runs against real redis-servers in test_redis_cluster_formation.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.deploy.objects import Objs, find, ids
from tools.deploycheck import check, components, manifests, redis_cluster, rules


def _nodes(o: Objs) -> dict:
    return find(o, "StatefulSet", "redis-cluster")


def _node_container(o: Objs) -> dict:
    return manifests.pod_spec(_nodes(o))["containers"][0]


def _job_container(o: Objs) -> dict:
    return manifests.pod_spec(find(o, "Job", "redis-cluster-create"))["containers"][0]


def _conf(o: Objs) -> dict:
    return next(
        x["data"]
        for x in o
        if x["kind"] == "ConfigMap" and x["metadata"]["name"].startswith("redis-cluster-config")
    )


def _edit_conf(o: Objs, old: str, new: str) -> None:
    data = _conf(o)
    assert old in data["redis.conf"], f"{old!r} is not in the component's redis.conf"
    data["redis.conf"] = data["redis.conf"].replace(old, new)


# --- mutations the rule redis-cluster must catch ------------------------------------------------


def _two_masters(o: Objs) -> None:
    _nodes(o)["spec"]["replicas"] = 4
    env = next(e for e in _job_container(o)["env"] if e["name"] == "NODES")
    env["value"] = " ".join(env["value"].split()[:4])


def _job_lists_fewer_nodes(o: Objs) -> None:
    env = next(e for e in _job_container(o)["env"] if e["name"] == "NODES")
    env["value"] = " ".join(env["value"].split()[:5])


def _masters_without_replicas(o: Objs) -> None:
    script = _job_container(o)["command"]
    script[-1] = script[-1].replace("--cluster-replicas 1", "--cluster-replicas 0")


def _no_formation_job(o: Objs) -> None:
    o.remove(find(o, "Job", "redis-cluster-create"))


def _no_aof(o: Objs) -> None:
    _edit_conf(o, "appendonly yes", "appendonly no")


def _evicts(o: Objs) -> None:
    _edit_conf(o, "maxmemory-policy noeviction", "maxmemory-policy allkeys-lru")


def _nodes_conf_on_tmp(o: Objs) -> None:
    _edit_conf(o, "cluster-config-file /data/nodes.conf", "cluster-config-file /tmp/nodes.conf")


def _no_node_timeout(o: Objs) -> None:
    _edit_conf(o, "cluster-node-timeout 5000", "")


def _maxmemory_at_the_limit(o: Objs) -> None:
    _edit_conf(o, "maxmemory 700mb", "maxmemory 1gb")


def _no_maxmemory(o: Objs) -> None:
    _edit_conf(o, "maxmemory 700mb", "")


def _bus_port_closed(o: Objs) -> None:
    for rule in find(o, "NetworkPolicy", "redis-cluster")["spec"]["ingress"]:
        rule["ports"] = [p for p in rule["ports"] if p["port"] != 16379]


def _no_budget(o: Objs) -> None:
    o.remove(find(o, "PodDisruptionBudget", "redis-cluster"))


def _budget_of_two(o: Objs) -> None:
    find(o, "PodDisruptionBudget", "redis-cluster")["spec"]["maxUnavailable"] = 2


def _no_anti_affinity(o: Objs) -> None:
    del manifests.pod_spec(_nodes(o))["affinity"]


def _anti_affinity_by_zone_only(o: Objs) -> None:
    anti = manifests.pod_spec(_nodes(o))["affinity"]["podAntiAffinity"]
    for term in anti["preferredDuringSchedulingIgnoredDuringExecution"]:
        term["podAffinityTerm"]["topologyKey"] = "topology.kubernetes.io/zone"


#: our rule id -> mutations of the redis-cluster build that must each make that rule fail
CLUSTER_MUTATIONS: dict[str, list[Callable[[Objs], None]]] = {
    redis_cluster.RULE_ID: [
        _two_masters,
        _job_lists_fewer_nodes,
        _masters_without_replicas,
        _no_formation_job,
        _no_aof,
        _evicts,
        _nodes_conf_on_tmp,
        _no_node_timeout,
        _maxmemory_at_the_limit,
        _no_maxmemory,
        _bus_port_closed,
        _no_budget,
        _budget_of_two,
        _no_anti_affinity,
        _anti_affinity_by_zone_only,
    ]
}
CASES = [(rule_id, m) for rule_id, ms in CLUSTER_MUTATIONS.items() for m in ms]


def test_the_prod_overlay_with_the_cluster_passes_the_whole_check(cluster: Objs) -> None:
    # Given prod with components/redis-cluster instead of components/redis
    # When it goes through schemas, checkov and every rule of ours
    problems = check.check_objects(cluster)
    # Then nothing is found: the pods are hardened like components/redis' and the rules hold
    assert problems == [], "\n".join(map(str, problems))


def test_the_component_replaces_the_single_redis(cluster: Objs) -> None:
    # Given the build; Then it has the cluster's StatefulSet and not components/redis' one
    kinds = {(o["kind"], o["metadata"]["name"]) for o in cluster}
    assert ("StatefulSet", "redis-cluster") in kinds
    assert ("StatefulSet", "redis") not in kinds
    # and six nodes, started together, on volumes, spread by node
    nodes = _nodes(cluster)
    assert nodes["spec"]["replicas"] == 6
    assert nodes["spec"]["podManagementPolicy"] == "Parallel"
    assert nodes["spec"]["serviceName"] == "redis-cluster-headless"
    assert [t["metadata"]["name"] for t in nodes["spec"]["volumeClaimTemplates"]] == ["data"]


def test_the_services_expose_the_client_port_and_the_bus(cluster: Objs) -> None:
    # Given the headless Service (the nodes' stable names) and the client Service
    headless = find(cluster, "Service", "redis-cluster-headless")["spec"]
    client = find(cluster, "Service", "redis-cluster")["spec"]
    # Then the headless one has no cluster IP, publishes pods before they are ready (formation
    # and rejoin need the names first), and carries both ports; clients get the client port
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["ports"]} == {6379, 16379}
    assert [p["port"] for p in client["ports"]] == [6379]
    labels = manifests.pod_labels(_nodes(cluster))
    for spec in (headless, client):
        assert manifests.selects({"matchLabels": spec["selector"]}, labels)


def test_a_node_announces_its_stable_name_and_rewrites_its_own_address(cluster: Objs) -> None:
    # Given the node's start command
    container = _node_container(cluster)
    script = container["command"][-1]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    # Then it announces the pod IP on the bus and the headless DNS name to clients, and fixes
    # its own line of nodes.conf to the new pod IP before Redis reads it
    assert env == {
        "POD_IP": "status.podIP",
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }
    assert '--cluster-announce-ip "${POD_IP}"' in script
    assert "${POD_NAME}.redis-cluster-headless.${POD_NAMESPACE}.svc.cluster.local" in script
    assert "/ myself,/" in script and "/data/nodes.conf" in script
    assert "cluster-preferred-endpoint-type hostname" in _conf(cluster)["redis.conf"]


def test_the_formation_job_makes_one_replica_per_master(cluster: Objs) -> None:
    # Given the formation Job's script; Then it creates with one replica per master, unattended
    script = _job_container(cluster)["command"][-1]
    assert "redis-cli --cluster create ${addresses} --cluster-replicas 1 --cluster-yes" in script


def test_the_single_redis_rule_leaves_cluster_nodes_to_the_cluster_rule(cluster: Objs) -> None:
    # Given the cluster build (six replicas of a redis image, a Job running redis-cli)
    # When the single-Redis rule runs; Then it has nothing to say about them
    assert components.redis_store(cluster) == []
    # but the cluster rule does look at the nodes: breaking one setting is noticed
    _evicts(cluster)
    assert redis_cluster.redis_cluster(cluster)


@pytest.mark.parametrize(("rule_id", "mutate"), CASES, ids=ids(CASES))
def test_the_cluster_rule_fails_on_a_manifest_that_breaks_it(
    cluster: Objs, rule_id: str, mutate
) -> None:
    # Given the cluster build, broken in one way
    mutate(cluster)
    # When our rules run
    problems = rules.RULES[rule_id][1](cluster)
    # Then the cluster rule reports it, and only that rule
    assert problems, f"{rule_id} did not notice {mutate.__name__}"
    assert {(p.scanner, p.rule) for p in problems} == {("socialproof", rule_id)}


def test_the_memory_units_are_read_as_redis_and_kubernetes_read_them() -> None:
    assert redis_cluster.redis_bytes("700mb") == 700 * 1024**2
    assert redis_cluster.redis_bytes("1gb") == 1024**3
    assert redis_cluster.redis_bytes("1000000") == 1_000_000
    assert redis_cluster.redis_bytes("2m") == 2_000_000
    assert redis_cluster.quantity_bytes("1Gi") == 1024**3
    assert redis_cluster.quantity_bytes("512M") == 512 * 1000**2
