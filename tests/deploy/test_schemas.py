"""Schema validation of the custom resources against their projects' own CRDs: Strimzi's (generated
once from Maven Central's jars into a cache, ``tools/deploycheck/crds.py``) and
prometheus-operator's (its Go module's zip, fetched once and checked against a pinned SHA-256,
``tools/deploycheck/promcrds.py``); each catches a broken resource, and a schema that cannot be
had fails, never passes."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import urllib.error

import pytest

from tests.deploy.objects import Objs, find
from tools.deploycheck import crds, manifests, promcrds, schemas

STRIMZI = "kafka.strimzi.io/v1beta2"
MONITORING = "monitoring.coreos.com/v1"


def test_strimzi_kinds_are_validated_against_the_pinned_releases_crds() -> None:
    folder = crds.ensure_strimzi()
    version = crds.strimzi_version()
    assert (folder / ".complete").read_text().strip() == version == "0.48.0"
    sources = schemas.custom_kinds()
    for kind in ("Kafka", "KafkaNodePool", "KafkaTopic"):
        assert sources[(STRIMZI, kind)] == f"Strimzi {version} CRD"
        assert f"name: {kind.lower()}s.kafka.strimzi.io" in (folder / f"{kind}.yaml").read_text()


def test_prometheus_operator_kinds_are_validated_against_the_pinned_releases_crds() -> None:
    folder = promcrds.ensure_prometheus_operator()
    assert promcrds.VERSION == "v0.93.0"
    assert (folder / ".complete").read_text().startswith(f"v0.93.0 sha256:{promcrds.SHA256}\n")
    assert sorted(p.name for p in folder.iterdir()) == [
        ".complete",
        "PodMonitor.yaml",
        "PrometheusRule.yaml",
    ]  # only the kinds used, not the module's other CRDs
    sources = schemas.custom_kinds()
    for kind, plural in promcrds.KINDS.items():
        assert sources[(MONITORING, kind)] == "prometheus-operator v0.93.0 CRD"
        crd = (folder / f"{kind}.yaml").read_text()
        assert f"name: {plural}.monitoring.coreos.com" in crd
        assert "operator.prometheus.io/version: 0.93.0" in crd


def test_every_monitoring_kind_the_manifests_use_has_its_crd(built: dict[str, Objs]) -> None:
    used = {
        o["kind"]
        for objs in built.values()
        for o in objs
        if o["apiVersion"].startswith("monitoring.coreos.com/")
    }
    assert {o["apiVersion"] for objs in built.values() for o in objs if o["kind"] in used} == {
        MONITORING
    }
    assert used == set(promcrds.KINDS)


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


def _rule_group(s: dict) -> dict:
    return s["groups"][0]


def _rule(s: dict) -> dict:
    return s["groups"][0]["rules"][0]


def _endpoint(s: dict) -> dict:
    return s["podMetricsEndpoints"][0]


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "field", "message"),
    [
        (
            "PrometheusRule", "socialproof", lambda s: _rule_group(s).pop("name"),
            "$.spec.groups[0]", "'name' is a required property",
        ),
        (
            "PrometheusRule", "socialproof", lambda s: _rule_group(s).update(interval=30),
            "$.spec.groups[0].interval", "30 is not of type 'string'",
        ),
        (
            "PrometheusRule", "socialproof", lambda s: _rule(s).update(expr=["up == 0"]),
            "$.spec.groups[0].rules[0].expr", "is not valid under any of the given schemas",
        ),
        (
            "PrometheusRule", "socialproof", lambda s: _rule(s).update({"for": "3 minutes"}),
            "$.spec.groups[0].rules[0].for", "'3 minutes' does not match",
        ),
        (
            "PrometheusRule", "socialproof", lambda s: _rule(s).update(severity="critical"),
            "$.spec.groups[0].rules[0]", "'severity' was unexpected",
        ),
        (
            "PrometheusRule", "socialproof",
            lambda s: _rule_group(s).update(partial_response_strategy="retry"),
            "$.spec.groups[0].partial_response_strategy", "'retry' does not match",
        ),
        (
            "PodMonitor", "socialproof", lambda s: _endpoint(s).update(scheme="gopher"),
            "$.spec.podMetricsEndpoints[0].scheme", "'gopher' is not one of",
        ),
        (
            "PodMonitor", "socialproof", lambda s: s.pop("selector"),
            "$.spec", "'selector' is a required property",
        ),
    ],
)  # fmt: skip
def test_prometheus_operators_schema_rejects_a_broken_resource(
    prod: Objs, kind: str, name: str, mutate, field: str, message: str
) -> None:
    obj = find(prod, kind, name)
    assert schemas.schema_problems(obj) == []
    mutate(obj["spec"])
    (problem,) = schemas.schema_problems(obj)
    assert (problem.scanner, problem.rule, problem.where) == (
        "jsonschema",
        "crd-schema",
        f"{kind}/{name}",
    )
    assert problem.message.startswith(f"prometheus-operator v0.93.0 CRD: {field}: ")
    assert message in problem.message


def test_prometheus_operators_schema_takes_the_fields_the_manifests_do_not_use_yet(
    prod: Objs,
) -> None:
    """The whole CRD, not the fields used: a hand-kept schema rejected these. The group's
    ``^(?i)(abort|warn)?$`` is Go's regex syntax, which Python's ``re`` takes only rewritten."""
    rule = find(prod, "PrometheusRule", "socialproof")
    _rule_group(rule["spec"]).update(partial_response_strategy="WARN", limit=10)
    _rule(rule["spec"]).update(keep_firing_for="5m", expr=1)
    monitor = find(prod, "PodMonitor", "socialproof")
    _endpoint(monitor["spec"]).update(scheme="https", honorLabels=True, scrapeTimeout="10s")
    assert schemas.schema_problems(rule) + schemas.schema_problems(monitor) == []


def _offline_zip(monkeypatch, body: bytes) -> list[str]:
    """The Go module proxy, answering ``body``; returns the URLs asked."""
    asked: list[str] = []

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        asked.append(url)
        return io.BytesIO(body)

    monkeypatch.setattr(promcrds.urllib.request, "urlopen", urlopen)
    return asked


def test_the_module_zip_is_fetched_once_and_verified(tmp_path, monkeypatch) -> None:
    real = promcrds.module_zip()
    promcrds.ensure_prometheus_operator()  # the real cache, filled once (from the network)
    monkeypatch.setenv("SOCIALPROOF_CRD_CACHE", str(tmp_path))
    asked = _offline_zip(monkeypatch, real.read_bytes())
    folder = promcrds.ensure_prometheus_operator()
    assert asked == [promcrds.URL]
    assert promcrds.URL == (
        "https://proxy.golang.org/github.com/prometheus-operator/prometheus-operator/@v/v0.93.0.zip"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name, real.name]
    assert promcrds.ensure_prometheus_operator() == folder and len(asked) == 1  # offline after


def test_a_cached_zip_with_another_checksum_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOCIALPROOF_CRD_CACHE", str(tmp_path))
    corrupted = promcrds.module_zip()
    corrupted.write_bytes(b"PK\x03\x04 not the module")
    asked = _offline_zip(monkeypatch, b"")
    with pytest.raises(crds.CrdsUnavailable, match="SHA-256") as refused:
        promcrds.ensure_prometheus_operator()
    assert str(corrupted) in str(refused.value) and promcrds.SHA256 in str(refused.value)
    assert asked == []  # the cache is not silently refetched: someone should look
    assert list(tmp_path.iterdir()) == [corrupted]  # and nothing was extracted from it


def test_a_download_with_another_checksum_is_refused_and_not_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOCIALPROOF_CRD_CACHE", str(tmp_path))
    _offline_zip(monkeypatch, b"PK\x03\x04 a tampered module")
    with pytest.raises(crds.CrdsUnavailable, match=f"refused {promcrds.URL}: its SHA-256"):
        promcrds.ensure_prometheus_operator()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (
            urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
            "name resolution",
        ),
        (
            urllib.error.HTTPError(
                promcrds.URL, 403, "Forbidden", {}, io.BytesIO(b"not available: v0.93.0")
            ),
            "HTTP 403 Forbidden: not available: v0.93.0",
        ),
    ],
)
def test_a_failed_fetch_names_the_url_and_why(tmp_path, monkeypatch, error, why: str) -> None:
    monkeypatch.setenv("SOCIALPROOF_CRD_CACHE", str(tmp_path))

    def urlopen(url: str, timeout: float) -> None:
        raise error

    monkeypatch.setattr(promcrds.urllib.request, "urlopen", urlopen)
    with pytest.raises(crds.CrdsUnavailable) as failed:
        promcrds.ensure_prometheus_operator()
    assert str(failed.value).startswith(f"fetching {promcrds.URL} failed: ")
    assert why in str(failed.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare (util-linux)")
def test_every_custom_resource_is_validated_without_a_network(
    built: dict[str, Objs], tmp_path
) -> None:
    """Once ``python -m tools.deploycheck.crds`` has filled the cache, no schema needs a network."""
    import yaml

    assert crds.main() == 0
    objs = [o for objs in built.values() for o in objs]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(objs))
    code = (
        "from tools.deploycheck import manifests, schemas; "
        f"objs = manifests.load_documents(open({str(tmp_path / 'all.yaml')!r}).read()); "
        "custom = [o for o in objs if o['apiVersion'].startswith(schemas.CUSTOM_GROUPS)]; "
        "print(sorted({o['kind'] for o in custom}), "
        "[str(p) for o in custom for p in schemas.schema_problems(o)])"
    )
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no network namespaces here")
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=manifests.ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "['Kafka', 'KafkaNodePool', 'KafkaTopic', 'PodMonitor', 'PrometheusRule'] []"
    )


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
