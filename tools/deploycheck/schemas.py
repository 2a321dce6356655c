"""Offline schema validation: does each object say what its API accepts?

Kubernetes' own kinds are validated with ``kubernetes-validate`` against the OpenAPI schemas of
:data:`KUBERNETES_VERSION`, strictly: an unknown field fails, as ``kubectl apply`` fails with
field validation on.

The custom resources (Strimzi's Kafka, KafkaNodePool and KafkaTopic; the Prometheus operator's
PrometheusRule and PodMonitor) are validated with the schemas below. Both projects publish their
CRDs only as release assets and Helm charts, and no registry reachable here carries them
(Strimzi's Maven artifact ``io.strimzi:api`` has the Java model, not the CRD YAML), so these are
kept as small as the fields the manifests use, and strict: a misspelt or misplaced field fails.
A field the manifests start to use has to be added here first, which is the point.
"""

from __future__ import annotations

from functools import cache

from tools.deploycheck.manifests import Obj, Problem, ref

#: the Kubernetes version whose API schemas the manifests must satisfy
KUBERNETES_VERSION = "1.33.0"

STRIMZI = "kafka.strimzi.io/v1beta2"
MONITORING = "monitoring.coreos.com/v1"


def _strict(properties: Obj, required: tuple[str, ...] = ()) -> Obj:
    schema: Obj = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _resource(api_version: str, kind: str, spec: Obj) -> Obj:
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    metadata = _strict(
        {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": string_map,
            "annotations": string_map,
        },
        required=("name",),
    )
    return _strict(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


@cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> JSON schema of the custom resources, limited to the fields used."""
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    quantities = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
    resources = _strict({"requests": quantities, "limits": quantities})
    volume_fields = {
        "id": {"type": "integer", "minimum": 0},
        "type": {"enum": ["ephemeral", "persistent-claim"]},
        "size": {"type": "string"},
        "sizeLimit": {"type": "string"},
        "class": {"type": "string"},
        "deleteClaim": {"type": "boolean"},
        "kraftMetadata": {"enum": ["shared"]},
    }
    storage = _strict(
        {
            **volume_fields,
            "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
            "volumes": {"type": "array", "items": _strict(volume_fields, required=("type",))},
        },
        required=("type",),
    )
    scalar = {"type": ["string", "integer", "boolean", "number"]}
    listener = _strict(
        {
            "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
            "port": {"type": "integer", "minimum": 9092},
            "type": {
                "enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
            },
            "tls": {"type": "boolean"},
        },
        required=("name", "port", "type", "tls"),
    )
    kafka = _strict(
        {
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "metadataVersion": {"type": "string"},
            "listeners": {"type": "array", "minItems": 1, "items": listener},
            "config": {"type": "object", "additionalProperties": scalar},
            "resources": resources,
            "rack": {"type": "object"},
        },
        required=("listeners",),
    )
    rule = _strict(
        {
            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "record": {"type": "string"},
            "expr": {"type": "string", "minLength": 1},
            "for": {"type": "string", "pattern": r"^(\d+[smhdwy])+$"},
            "labels": string_map,
            "annotations": string_map,
        },
        required=("expr",),
    )
    group = _strict(
        {
            "name": {"type": "string"},
            "interval": {"type": "string"},
            "rules": {"type": "array", "items": rule},
        },
        required=("name", "rules"),
    )
    endpoint = _strict(
        {
            "port": {"type": "string"},
            "path": {"type": "string"},
            "interval": {"type": "string"},
            "scrapeTimeout": {"type": "string"},
        },
        required=("port",),
    )
    return {
        (STRIMZI, "Kafka"): _resource(
            STRIMZI,
            "Kafka",
            _strict(
                {
                    "kafka": kafka,
                    "entityOperator": _strict(
                        {"topicOperator": {"type": "object"}, "userOperator": {"type": "object"}}
                    ),
                    "kafkaExporter": _strict(
                        {
                            "topicRegex": {"type": "string"},
                            "groupRegex": {"type": "string"},
                            "resources": resources,
                        }
                    ),
                },
                required=("kafka",),
            ),
        ),
        (STRIMZI, "KafkaNodePool"): _resource(
            STRIMZI,
            "KafkaNodePool",
            _strict(
                {
                    "replicas": {"type": "integer", "minimum": 0},
                    "roles": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"enum": ["controller", "broker"]},
                    },
                    "storage": storage,
                    "resources": resources,
                    "jvmOptions": {"type": "object"},
                },
                required=("replicas", "roles", "storage"),
            ),
        ),
        (STRIMZI, "KafkaTopic"): _resource(
            STRIMZI,
            "KafkaTopic",
            _strict(
                {
                    "topicName": {"type": "string"},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "integer", "boolean"]},
                    },
                },
                required=("partitions", "replicas"),
            ),
        ),
        (MONITORING, "PrometheusRule"): _resource(
            MONITORING,
            "PrometheusRule",
            _strict({"groups": {"type": "array", "items": group}}, required=("groups",)),
        ),
        (MONITORING, "PodMonitor"): _resource(
            MONITORING,
            "PodMonitor",
            _strict(
                {
                    "jobLabel": {"type": "string"},
                    "selector": _strict({"matchLabels": string_map}),
                    "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": endpoint},
                },
                required=("selector", "podMetricsEndpoints"),
            ),
        ),
    }


def schema_problems(obj: Obj, version: str = KUBERNETES_VERSION) -> list[Problem]:
    """Offline validation: Kubernetes' own schemas (strict: unknown fields fail) or ours for CRs."""
    import jsonschema

    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    custom = crd_schemas().get(key)
    if custom is not None:
        errors = sorted(
            jsonschema.Draft202012Validator(custom).iter_errors(obj), key=lambda e: e.json_path
        )
        return [
            Problem("jsonschema", "crd-schema", ref(obj), f"{e.json_path}: {e.message}")
            for e in errors
        ]
    from kubernetes_validate import utils as kv

    try:
        kv.validate(obj, version, strict=True)
    except kv.SchemaNotFoundError as exc:
        return [Problem("kubernetes-validate", "schema", ref(obj), exc.message)]
    except kv.ValidationError as exc:
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        return [Problem("kubernetes-validate", "schema", ref(obj), f"{path}: {exc.message[:300]}")]
    return []
