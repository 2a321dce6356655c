"""deploy-check's rules: the overlays pass them, and each rule fails on a manifest that breaks it.

Every rule in ``socialproof.deploy.RULES`` must have a mutation here (a test checks that), so a
rule that can never fail cannot be added silently.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tools.deploycheck import rules as deploy

Objs = list[dict]


def find(objects: Objs, kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objects: Objs, kind: str = "Deployment", name: str = "orders") -> dict:
    return deploy.pod_spec(find(objects, kind, name))["containers"][0]


def pod(objects: Objs, kind: str = "Deployment", name: str = "orders") -> dict:
    return deploy.pod_spec(find(objects, kind, name))


def _root(o: Objs) -> None:
    pod(o)["securityContext"]["runAsUser"] = 0


def _root_allowed(o: Objs) -> None:
    del pod(o, "StatefulSet", "redis")["securityContext"]["runAsNonRoot"]


def _escalation(o: Objs) -> None:
    container(o, name="notifier")["securityContext"]["allowPrivilegeEscalation"] = True


def _privileged(o: Objs) -> None:
    container(o, name="catalog")["securityContext"]["privileged"] = True


def _writable_root(o: Objs) -> None:
    container(o, name="stream-processor")["securityContext"]["readOnlyRootFilesystem"] = False


def _capabilities(o: Objs) -> None:
    container(o)["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _capability_added(o: Objs) -> None:
    container(o)["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]


def _seccomp(o: Objs) -> None:
    pod(o)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def _host_network(o: Objs) -> None:
    pod(o, name="social")["hostNetwork"] = True


def _no_limits(o: Objs) -> None:
    del container(o)["resources"]["limits"]


def _no_memory_request(o: Objs) -> None:
    del container(o, "StatefulSet", "redis")["resources"]["requests"]["memory"]


def _no_readiness(o: Objs) -> None:
    del container(o, name="stream-processor")["readinessProbe"]


def _liveness_on_readyz(o: Objs) -> None:
    container(o)["livenessProbe"]["httpGet"]["path"] = "/readyz"


def _probe_wrong_port(o: Objs) -> None:
    container(o)["readinessProbe"]["httpGet"]["port"] = "metrics"


def _latest(o: Objs) -> None:
    container(o)["image"] = "socialproof:latest"


def _untagged(o: Objs) -> None:
    container(o, "StatefulSet", "redis")["image"] = "redis"


def _default_account(o: Objs) -> None:
    del pod(o)["serviceAccountName"]


def _token_mounted(o: Objs) -> None:
    pod(o)["automountServiceAccountToken"] = True


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
    find(o, "ConfigMap", deploy.CONFIG_MAP)["data"]["SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS"] = "6000"


def _setting_missing(o: Objs) -> None:
    del find(o, "ConfigMap", deploy.CONFIG_MAP)["data"]["SOCIALPROOF_WORKER_BATCH_SIZE"]


def _secret_in_plain_text(o: Objs) -> None:
    env = container(o)["env"]
    env[:] = [e for e in env if e["name"] != "SOCIALPROOF_SERVICE_TOKEN"]
    env.append({"name": "SOCIALPROOF_SERVICE_TOKEN", "value": "a-token-in-the-manifest"})


def _no_default_deny(o: Objs) -> None:
    o.remove(find(o, "NetworkPolicy", "default-deny-all"))


def _workload_without_allow(o: Objs) -> None:
    o.remove(find(o, "NetworkPolicy", "redis"))


#: rule id -> mutations that must each make that rule fail
MUTATIONS: dict[str, list[Callable[[Objs], None]]] = {
    "non-root": [_root, _root_allowed],
    "no-privilege-escalation": [_escalation, _privileged],
    "read-only-root-fs": [_writable_root],
    "drop-capabilities": [_capabilities, _capability_added],
    "seccomp": [_seccomp],
    "host-isolation": [_host_network],
    "resources": [_no_limits, _no_memory_request],
    "probes": [_no_readiness, _liveness_on_readyz, _probe_wrong_port],
    "pinned-images": [_latest, _untagged],
    "service-accounts": [_default_account, _token_mounted],
    "graceful-termination": [_no_prestop, _short_grace],
    "disruption-budgets": [_no_pdb],
    "autoscaling": [_no_hpa, _replicas_with_hpa],
    "processor-partitions": [_too_many_workers, _worker_autoscaled_past_partitions],
    "kafka-timeouts": [_dev_session_timeout],
    "settings": [_setting_missing, _secret_in_plain_text],
    "network-default-deny": [_no_default_deny, _workload_without_allow],
}

CASES = [(rule_id, m) for rule_id, ms in MUTATIONS.items() for m in ms]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_pass_schemas_and_every_rule(built: dict[str, Objs], overlay: str) -> None:
    problems = deploy.check_objects(built[overlay])
    assert problems == [], "\n".join(map(str, problems))


def test_every_rule_has_a_failing_mutation() -> None:
    assert set(MUTATIONS) == set(deploy.RULES)


@pytest.mark.parametrize(
    ("rule_id", "mutate"), CASES, ids=[f"{r}-{m.__name__.strip('_')}" for r, m in CASES]
)
def test_each_rule_fails_on_a_manifest_that_breaks_it(prod: Objs, rule_id: str, mutate) -> None:
    mutate(prod)
    problems = deploy.RULES[rule_id][1](prod)
    assert problems, f"{rule_id} did not notice {mutate.__name__}"
    assert {p.rule for p in problems} == {rule_id}


def test_schema_validation_rejects_unknown_and_mistyped_fields(prod: Objs) -> None:
    deployment = find(prod, "Deployment", "orders")
    deployment["spec"]["replica"] = 3  # typo: strict schemas reject unknown fields
    container(prod, name="catalog")["ports"][0]["containerPort"] = "8001"  # string, not integer
    find(prod, "KafkaTopic", "orders-events")["spec"]["partitions"] = "six"
    find(prod, "Kafka", "socialproof")["spec"]["kafka"]["listners"] = []
    problems = [p for p in deploy.check_objects(prod) if p.rule == "schema"]
    where = {p.where for p in problems}
    assert {
        "Deployment/orders",
        "Deployment/catalog",
        "KafkaTopic/orders-events",
        "Kafka/socialproof",
    } <= where


def test_schema_validation_rejects_a_kind_the_pinned_kubernetes_does_not_have(prod: Objs) -> None:
    hpa = find(prod, "HorizontalPodAutoscaler", "orders")
    hpa["apiVersion"] = "autoscaling/v2beta2"  # removed in Kubernetes 1.26
    assert [p.rule for p in deploy.schema_problems(hpa)] == ["schema"]


def test_settings_classes_are_found_dynamically_and_each_is_mapped_to_a_command() -> None:
    from socialproof import settings as s

    classes = deploy.settings_classes()
    assert {
        "Settings",
        "CatalogSettings",
        "OrdersSettings",
        "SocialSettings",
        "NotifierSettings",
    } <= set(classes)
    assert "DevStackSettings" not in classes  # `make run` only, never deployed
    assert all(issubclass(c, s.Settings) for c in classes.values())
    # A class is covered when a command reads it or a subclass of it (a shared base such as
    # PrivacyDefaults has its fields checked through every mapped subclass).
    mapped = {classes[name] for name in deploy.COMMAND_SETTINGS.values()}
    unmapped = {name for name, cls in classes.items()
                if not any(issubclass(m, cls) for m in mapped)}
    assert not unmapped, f"map {unmapped} to the command that reads it in deploy.COMMAND_SETTINGS"


def test_a_new_setting_without_a_manifest_value_fails(prod: Objs, monkeypatch) -> None:
    from pydantic import Field

    from socialproof import settings as s

    class NotifierSettings(s.NotifierSettings):
        brand_new_knob: int = Field(default=1)

    classes = {**deploy.settings_classes(), "NotifierSettings": NotifierSettings}
    monkeypatch.setattr(deploy, "settings_classes", lambda: classes)
    problems = deploy.RULES["settings"][1](prod)
    assert [p.message for p in problems] == [
        "SOCIALPROOF_BRAND_NEW_KNOB (NotifierSettings.brand_new_knob) has no value"
    ]


def test_every_alert_has_a_runbook_section(built: dict[str, Objs], tmp_path) -> None:
    assert deploy.alert_rules(built["prod"]), "the prod overlay has alert rules"
    assert deploy.runbook_problems(built["prod"]) == []
    readme = (deploy.DEPLOY_DIR / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme.replace("### SocialproofDeadLetters", "### Dead"))
    problems = deploy.runbook_problems(built["prod"], tmp_path)
    assert [(p.rule, p.where) for p in problems] == [("runbook", "alert SocialproofDeadLetters")]


def test_promtool_accepts_the_alert_rules_and_rejects_broken_promql(prod: Objs) -> None:
    assert deploy.promtool_problems(prod) == []
    rule = deploy.alert_rules(prod)[0]
    rule["expr"] = "sum by (job (up"
    assert [p.rule for p in deploy.promtool_problems(prod)] == ["promql"]


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
    assert deploy.promtool_problems(as_rules) == []


def test_alerts_name_the_consumer_group_the_processor_uses(prod: Objs) -> None:
    group = find(prod, "ConfigMap", deploy.CONFIG_MAP)["data"]["SOCIALPROOF_WORKER_CONSUMER_GROUP"]
    lag_rules = [r for r in deploy.alert_rules(prod) if "kafka_consumergroup_lag" in r["expr"]]
    assert lag_rules and all(f'consumergroup="{group}"' in r["expr"] for r in lag_rules)


def test_ports_in_the_config_match_the_containers(prod: Objs) -> None:
    data = find(prod, "ConfigMap", deploy.CONFIG_MAP)["data"]
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

    version = tomllib.loads((deploy.ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {
        c["image"]
        for objs in built.values()
        for _o, spec in deploy.workloads(objs)
        for c in deploy.containers(spec)
        if deploy.is_socialproof(c)
    }
    for path in deploy.job_templates():
        for job in deploy.load_documents(path.read_text()):
            images |= {c["image"] for c in deploy.containers(deploy.pod_spec(job))}
    assert images == {f"socialproof:{version}"}
