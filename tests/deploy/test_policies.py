"""Our own rules in deploy-check (``tools.deploycheck.rules.RULES``): each fails on a manifest
that breaks it, and every rule must have a mutation here (a test checks that), so a rule that can
never fail cannot be added silently. Also the schemas, the alert rules and the settings map.
(checkov's checks have the same kind of tests in test_scanner.py.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.deploy.objects import Objs, cases, container, find, ids, pod, redis_config
from tools.deploycheck import alerts, check, manifests, rules, schemas

# --- mutations that our rules must catch ------------------------------------------------------


def _default_account(o: Objs) -> None:
    del pod(o)["serviceAccountName"]


def _undefined_account(o: Objs) -> None:
    pod(o, name="social")["serviceAccountName"] = "nobody"


def _liveness_on_readyz(o: Objs) -> None:
    container(o)["livenessProbe"]["httpGet"]["path"] = "/readyz"


def _probe_wrong_port(o: Objs) -> None:
    container(o)["readinessProbe"]["httpGet"]["port"] = "metrics"


def _host_path(o: Objs) -> None:
    pod(o)["volumes"].append({"name": "host", "hostPath": {"path": "/var/lib"}})


def _no_prestop(o: Objs) -> None:
    del container(o)["lifecycle"]


def _short_grace(o: Objs) -> None:
    pod(o, name="stream-processor")["terminationGracePeriodSeconds"] = 10


def _no_pdb(o: Objs) -> None:
    o.remove(find(o, "PodDisruptionBudget", "stream-processor"))


def _no_hpa(o: Objs) -> None:
    o.remove(find(o, "HorizontalPodAutoscaler", "notifier"))


def _replicas_with_hpa(o: Objs) -> None:
    find(o, "Deployment", "orders")["spec"]["replicas"] = 4


def _too_many_workers(o: Objs) -> None:
    find(o, "Deployment", "stream-processor")["spec"]["replicas"] = 7


def _worker_autoscaled_past_partitions(o: Objs) -> None:
    o.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "stream-processor"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "stream-processor",
                },
                "minReplicas": 2,
                "maxReplicas": 12,
            },
        }
    )


def _dev_session_timeout(o: Objs) -> None:
    config = find(o, "ConfigMap", manifests.CONFIG_MAP)["data"]
    config["SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS"] = "6000"


def _setting_missing(o: Objs) -> None:
    del find(o, "ConfigMap", manifests.CONFIG_MAP)["data"]["SOCIALPROOF_WORKER_BATCH_SIZE"]


def _secret_in_plain_text(o: Objs) -> None:
    env = container(o)["env"]
    env[:] = [e for e in env if e["name"] != "SOCIALPROOF_SERVICE_TOKEN"]
    env.append({"name": "SOCIALPROOF_SERVICE_TOKEN", "value": "a-token-in-the-manifest"})


def _no_default_deny(o: Objs) -> None:
    o.remove(find(o, "NetworkPolicy", "default-deny-all"))


def _workload_without_allow(o: Objs) -> None:
    o.remove(find(o, "NetworkPolicy", "redis"))


def _topic_past_brokers(o: Objs) -> None:
    find(o, "KafkaTopic", "orders-events")["spec"]["replicas"] = 4


def _no_broker_to_lose(o: Objs) -> None:
    find(o, "KafkaTopic", "orders-events")["spec"]["config"]["min.insync.replicas"] = "3"


def _auto_created_topics(o: Objs) -> None:
    find(o, "Kafka", "socialproof")["spec"]["kafka"]["config"]["auto.create.topics.enable"] = True


def _offsets_past_brokers(o: Objs) -> None:
    find(o, "Kafka", "socialproof")["spec"]["kafka"]["config"][
        "offsets.topic.replication.factor"
    ] = 5


def _transactions_stop_with_a_broker_down(o: Objs) -> None:
    find(o, "Kafka", "socialproof")["spec"]["kafka"]["config"]["transaction.state.log.min.isr"] = 3


def _topic_of_another_cluster(o: Objs) -> None:
    find(o, "KafkaTopic", "orders-events")["metadata"]["labels"]["strimzi.io/cluster"] = "other"


def _redis_scaled_out(o: Objs) -> None:
    find(o, "StatefulSet", "redis")["spec"]["replicas"] = 3


def _redis_evicts(o: Objs) -> None:
    data = redis_config(o)
    data["redis.conf"] = data["redis.conf"].replace("noeviction", "allkeys-lru")


def _redis_without_aof(o: Objs) -> None:
    data = redis_config(o)
    data["redis.conf"] = data["redis.conf"].replace("appendonly yes", "appendonly no")


def _redis_data_on_tmp(o: Objs) -> None:
    data = redis_config(o)
    data["redis.conf"] = data["redis.conf"].replace("dir /data", "dir /tmp")


#: our rule id -> mutations that must each make that rule fail
MUTATIONS: dict[str, list[Callable[[Objs], None]]] = {
    "service-accounts": [_default_account, _undefined_account],
    "probe-endpoints": [_liveness_on_readyz, _probe_wrong_port],
    "host-path": [_host_path],
    "graceful-termination": [_no_prestop, _short_grace],
    "disruption-budgets": [_no_pdb],
    "autoscaling": [_no_hpa, _replicas_with_hpa],
    "processor-partitions": [_too_many_workers, _worker_autoscaled_past_partitions],
    "kafka-timeouts": [_dev_session_timeout],
    "settings": [_setting_missing, _secret_in_plain_text],
    "network-default-deny": [_no_default_deny, _workload_without_allow],
    "kafka-cluster": [
        _topic_past_brokers,
        _no_broker_to_lose,
        _auto_created_topics,
        _offsets_past_brokers,
        _transactions_stop_with_a_broker_down,
        _topic_of_another_cluster,
    ],
    "redis-store": [_redis_scaled_out, _redis_evicts, _redis_without_aof, _redis_data_on_tmp],
}


CASES = cases(MUTATIONS)


def test_every_rule_has_a_failing_mutation() -> None:
    # the Redis Cluster rule's mutations break the redis-cluster build, not prod
    from tests.deploy.test_redis_cluster_component import CLUSTER_MUTATIONS

    assert set(MUTATIONS) | set(CLUSTER_MUTATIONS) == set(rules.RULES)


@pytest.mark.parametrize(("rule_id", "mutate"), CASES, ids=ids(CASES))
def test_each_rule_fails_on_a_manifest_that_breaks_it(prod: Objs, rule_id: str, mutate) -> None:
    mutate(prod)
    problems = rules.RULES[rule_id][1](prod)
    assert problems, f"{rule_id} did not notice {mutate.__name__}"
    assert {(p.scanner, p.rule) for p in problems} == {("socialproof", rule_id)}


def test_schema_validation_rejects_unknown_and_mistyped_fields(prod: Objs) -> None:
    deployment = find(prod, "Deployment", "orders")
    deployment["spec"]["replica"] = 3  # typo: strict schemas reject unknown fields
    container(prod, name="catalog")["ports"][0]["containerPort"] = "8001"  # string, not integer
    find(prod, "KafkaTopic", "orders-events")["spec"]["partitions"] = "six"
    find(prod, "Kafka", "socialproof")["spec"]["kafka"]["listners"] = []
    problems = check.check_objects(prod, rules=[], scan=False)
    assert {(p.scanner, p.rule, p.where) for p in problems} >= {
        ("kubernetes-validate", "schema", "Deployment/orders"),
        ("kubernetes-validate", "schema", "Deployment/catalog"),
        ("jsonschema", "crd-schema", "KafkaTopic/orders-events"),
        ("jsonschema", "crd-schema", "Kafka/socialproof"),
    }


def test_schema_validation_rejects_a_kind_the_pinned_kubernetes_does_not_have(prod: Objs) -> None:
    hpa = find(prod, "HorizontalPodAutoscaler", "orders")
    hpa["apiVersion"] = "autoscaling/v2beta2"  # removed in Kubernetes 1.26
    assert [p.rule for p in schemas.schema_problems(hpa)] == ["schema"]


def test_settings_classes_are_found_dynamically_and_each_is_mapped_to_a_command() -> None:
    from socialproof import settings as s

    classes = rules.settings_classes()
    assert {
        "Settings",
        "CatalogSettings",
        "OrdersSettings",
        "SocialSettings",
        "CountersSettings",
        "NotifierSettings",
    } <= set(classes)
    assert "DevStackSettings" not in classes  # `make run` only, never deployed
    assert all(issubclass(c, s.Settings) for c in classes.values())
    # A class is covered when a command reads it or a subclass of it (a shared base such as
    # PrivacyDefaults has its fields checked through every mapped subclass).
    mapped = {classes[name] for name in rules.COMMAND_SETTINGS.values()}
    unmapped = {
        name for name, cls in classes.items() if not any(issubclass(m, cls) for m in mapped)
    }
    assert not unmapped, f"map {unmapped} to the command that reads it in rules.COMMAND_SETTINGS"


def test_a_new_setting_without_a_manifest_value_fails(prod: Objs, monkeypatch) -> None:
    from pydantic import Field

    from services.notifier import settings as notifier

    class NotifierSettings(notifier.NotifierSettings):
        brand_new_knob: int = Field(default=1)

    classes = {**rules.settings_classes(), "NotifierSettings": NotifierSettings}
    monkeypatch.setattr(rules, "settings_classes", lambda: classes)
    problems = rules.RULES["settings"][1](prod)
    assert [p.message for p in problems] == [
        "SOCIALPROOF_BRAND_NEW_KNOB (NotifierSettings.brand_new_knob) has no value"
    ]


def test_every_alert_has_a_runbook_section(built: dict[str, Objs], tmp_path) -> None:
    assert alerts.alert_rules(built["prod"]), "the prod overlay has alert rules"
    assert alerts.runbook_problems(built["prod"]) == []
    readme = (manifests.DEPLOY_DIR / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme.replace("### SocialproofDeadLetters", "### Dead"))
    problems = alerts.runbook_problems(built["prod"], tmp_path)
    assert [(p.rule, p.where) for p in problems] == [("runbook", "alert SocialproofDeadLetters")]


def test_promtool_accepts_the_alert_rules_and_rejects_broken_promql(prod: Objs) -> None:
    assert alerts.promtool_problems(prod) == []
    rule = alerts.alert_rules(prod)[0]
    rule["expr"] = "sum by (job (up"
    assert [(p.scanner, p.rule) for p in alerts.promtool_problems(prod)] == [("promtool", "promql")]


def test_dashboard_queries_are_valid_promql(prod: Objs) -> None:
    import json

    dashboard = json.loads(
        find(prod, "ConfigMap", "socialproof-dashboard")["data"]["socialproof.json"]
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    as_rules = [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "dashboard"},
            "spec": {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)],
                    }
                ]
            },
        }
    ]
    assert alerts.promtool_problems(as_rules) == []


def test_alerts_name_the_consumer_group_the_processor_uses(prod: Objs) -> None:
    config = find(prod, "ConfigMap", manifests.CONFIG_MAP)["data"]
    group = config["SOCIALPROOF_WORKER_CONSUMER_GROUP"]
    lag_rules = [r for r in alerts.alert_rules(prod) if "kafka_consumergroup_lag" in r["expr"]]
    assert lag_rules and all(f'consumergroup="{group}"' in r["expr"] for r in lag_rules)


def test_ports_in_the_config_match_the_containers(prod: Objs) -> None:
    data = find(prod, "ConfigMap", manifests.CONFIG_MAP)["data"]
    for name in ("catalog", "orders", "social", "notifier"):
        assert container(prod, name=name)["ports"][0]["containerPort"] == int(
            data[f"SOCIALPROOF_{name.upper()}_PORT"]
        )
    assert container(prod, name="stream-processor")["ports"][0]["containerPort"] == int(
        data["SOCIALPROOF_WORKER_WEB_PORT"]
    )
    assert data["SOCIALPROOF_HOST"] == "0.0.0.0"


def test_image_tags_are_the_project_version(built: dict[str, Objs]) -> None:
    import tomllib

    version = tomllib.loads((manifests.ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {
        c["image"]
        for objs in built.values()
        for _o, spec in manifests.workloads(objs)
        for c in manifests.containers(spec)
        if manifests.is_socialproof(c)
    }
    for path in manifests.job_templates():
        for job in manifests.load_documents(path.read_text()):
            images |= {c["image"] for c in manifests.containers(manifests.pod_spec(job))}
    assert images == {f"socialproof:{version}"}
