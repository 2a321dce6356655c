"""Schema validation of the custom resources: Strimzi's come from Strimzi's own CRDs (generated once
from Maven Central's jars into a cache, ``tools/deploycheck/crds.py``), prometheus-operator's are
hand-kept; each catches a broken resource, and a schema that cannot be had fails, never passes."""

from __future__ import annotations

import pytest

from tests.deploy.objects import Objs, find
from tools.deploycheck import crds, schemas

STRIMZI = "kafka.strimzi.io/v1beta2"


def test_strimzi_kinds_are_validated_against_the_pinned_releases_crds() -> None:
    folder = crds.ensure_strimzi()
    version = crds.strimzi_version()
    assert (folder / ".complete").read_text().strip() == version == "0.48.0"
    sources = schemas.custom_kinds()
    for kind in ("Kafka", "KafkaNodePool", "KafkaTopic"):
        assert sources[(STRIMZI, kind)] == f"Strimzi {version} CRD"
        assert f"name: {kind.lower()}s.kafka.strimzi.io" in (folder / f"{kind}.yaml").read_text()
    assert sources[("monitoring.coreos.com/v1", "PodMonitor")].startswith("hand-kept")


def _strimzi_problems(obj: dict) -> list[tuple[str, str]]:
    return [(p.scanner, p.rule) for p in schemas.schema_problems(obj)]


@pytest.mark.parametrize(
    ("kind", "name", "mutate"),
    [
        # constraints of Strimzi's schema that a hand-kept one did not have, or had to copy
        ("Kafka", "socialproof", lambda s: s["kafka"]["listeners"][0].update(port=9091)),
        ("Kafka", "socialproof", lambda s: s["kafka"]["listeners"][0].update(name="Plain_1")),
        ("Kafka", "socialproof", lambda s: s["entityOperator"]["topicOperator"].update(tls=1)),
        ("KafkaNodePool", "dual-role", lambda s: s.update(roles=["zookeeper"])),
        ("KafkaNodePool", "dual-role", lambda s: s["storage"]["volumes"][0].update(size=100)),
        ("KafkaTopic", "orders-events", lambda s: s.update(partitions="six")),
        ("KafkaTopic", "orders-events", lambda s: s.update(replicationFactor=3)),
    ],
)
def test_strimzis_schema_rejects_a_broken_resource(
    prod: Objs, kind: str, name: str, mutate
) -> None:
    obj = find(prod, kind, name)
    assert schemas.schema_problems(obj) == []
    mutate(obj["spec"])
    assert _strimzi_problems(obj) == [("jsonschema", "crd-schema")]


def test_strimzis_free_form_config_stays_free_form(prod: Objs) -> None:
    """``x-kubernetes-preserve-unknown-fields`` maps (broker and topic config) take any key."""
    kafka = find(prod, "Kafka", "socialproof")
    kafka["spec"]["kafka"]["config"]["num.io.threads"] = 16
    topic = find(prod, "KafkaTopic", "orders-events")
    topic["spec"]["config"]["segment.bytes"] = "1073741824"
    assert schemas.schema_problems(kafka) + schemas.schema_problems(topic) == []


def test_a_custom_resources_metadata_is_validated_as_object_meta(prod: Objs) -> None:
    topic = find(prod, "KafkaTopic", "orders-events")
    topic["metadata"]["label"] = {"a": "b"}
    (problem,) = schemas.schema_problems(topic)
    assert (problem.scanner, problem.rule, problem.where) == (
        "kubernetes-validate",
        "schema",
        "KafkaTopic/orders-events",
    )
    assert "ObjectMeta" in problem.message and "'label' was unexpected" in problem.message


def test_hand_kept_schemas_reject_a_broken_resource(prod: Objs) -> None:
    rule = find(prod, "PrometheusRule", "socialproof")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "3 minutes"
    monitor = find(prod, "PodMonitor", "socialproof")
    monitor["spec"]["podMetricsEndpoints"][0]["scheme"] = "http"  # a real field, not one we use
    for obj in (rule, monitor):
        (problem,) = schemas.schema_problems(obj)
        assert (problem.scanner, problem.rule) == ("jsonschema", "crd-schema")
        assert problem.message.startswith("hand-kept prometheus-operator schema: ")


def test_a_kind_without_a_schema_fails(prod: Objs) -> None:
    topic = find(prod, "KafkaTopic", "orders-events")
    topic["apiVersion"] = "kafka.strimzi.io/v1"  # Strimzi 1.x's API: not what the pin serves
    assert _strimzi_problems(topic) == [("jsonschema", "crd-schema")]


def test_crds_that_cannot_be_had_fail_the_check_not_pass_it(prod: Objs, monkeypatch) -> None:
    def unavailable() -> None:
        raise crds.CrdsUnavailable(crds.INSTALL)

    monkeypatch.setattr(schemas, "_validators", unavailable)
    problems = schemas.schema_problems(find(prod, "Kafka", "socialproof"))
    assert [(p.scanner, p.rule, p.message) for p in problems] == [
        ("jsonschema", "crd-schema", crds.INSTALL)
    ]


def test_generating_without_java_or_maven_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOCIALPROOF_CRD_CACHE", str(tmp_path))
    monkeypatch.setattr(crds.shutil, "which", lambda name: None)
    with pytest.raises(crds.CrdsUnavailable, match="Java 17"):
        crds.ensure_strimzi()
    assert list(tmp_path.iterdir()) == []  # no half-made cache left behind


def test_strict_adds_no_additional_properties_where_the_crd_allows_them() -> None:
    schema = {
        "type": "object",
        "description": "dropped",
        "properties": {
            "description": {"type": "string", "description": "a field named description stays"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "either": {"oneOf": [{"properties": {"a": {}}, "required": ["a"]}]},
        },
    }
    assert crds.strict(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "either": {"oneOf": [{"properties": {"a": {}}, "required": ["a"]}]},
        },
        "additionalProperties": False,
    }
