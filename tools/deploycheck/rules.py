"""Our own rules: what no scanner can know, because it is about this project.

checkov (``scanner.py``) covers the generic pod-security, resources, probes and image policies.
What stays here is specific to socialproof: every setting a process reads is set (secrets by
reference), the stream processor never outnumbers its partitions, production Kafka session
timeouts, the probes hit our /readyz and /healthz, graceful termination fits the HTTP server's drain and
the worker's batch, disruption budgets, autoscalers, a default-deny network policy, each pod on its
own ServiceAccount, no hostPath volume (checkov only knows the Docker socket), and the invariants
of the Kafka, Redis and Redis Cluster components (``components.py``, ``redis_cluster.py``). Each
rule takes every object of one build and returns its :class:`Problem` s, none for a pass; each
has a test that breaks a manifest and sees it fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.topics import PROCESSOR_TOPICS
from tools.deploycheck import components, redis_cluster
from tools.deploycheck.manifests import (
    LONG_RUNNING,
    Obj,
    Problem,
    container_env,
    is_socialproof,
    per_container,
    pod_labels,
    ref,
    role,
    selects,
    workloads,
)

SCANNER = "socialproof"
#: seconds the HTTP server (uvicorn; granian for the notifier) waits for in-flight requests after
#: SIGTERM (socialproof/serve.py GRACEFUL_S)
HTTP_GRACEFUL_SHUTDOWN_S = 20
#: shortest consumer-group session timeout allowed in a deployment (only the tests that SIGKILL
#: consumers go lower, to the broker's minimum of 6 s)
MIN_SESSION_TIMEOUT_MS = 30_000

# --------------------------------------------------------------------------------------------
# which settings each socialproof command reads

#: socialproof command (leading arguments) -> name of the settings class it loads
COMMAND_SETTINGS = {
    ("serve", "catalog"): "CatalogSettings",
    ("serve", "orders"): "OrdersSettings",
    ("serve", "social"): "SocialSettings",
    ("serve", "notifier"): "NotifierSettings",
    ("worker",): "CountersSettings",
    # topic operations (issue 6): the replay rebuilds counters like the worker, dumps only read
    ("replay",): "CountersSettings",
    ("topics",): "Settings",
}


def settings_classes() -> dict[str, type]:
    """Every settings class a socialproof process reads, found in socialproof.settings and in
    each service's ``settings`` module (not a hard-coded list, so a new class or field is covered
    as soon as it exists)."""
    import importlib
    import importlib.util
    import inspect
    import pkgutil

    import services
    from socialproof import settings as s

    modules = [s] + [
        importlib.import_module(f"services.{info.name}.settings")
        for info in pkgutil.iter_modules(services.__path__)
        if info.ispkg and importlib.util.find_spec(f"services.{info.name}.settings")
    ]
    return {
        name: cls
        for module in modules
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, s.Settings) and cls.__module__ == module.__name__
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
# the rules

Rule = Callable[[list[Obj]], list[Problem]]
RULES: dict[str, tuple[str, Rule]] = {}


def rule(rule_id: str, description: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[rule_id] = (description, fn)
        return fn

    return register


def problem(rule_id: str, where: str, message: str) -> Problem:
    return Problem(SCANNER, rule_id, where, message)


@rule("service-accounts", "each pod runs as its own ServiceAccount, defined in the manifests")
def _service_accounts(objects: list[Obj]) -> list[Problem]:
    out = []
    accounts = {o["metadata"]["name"] for o in objects if o.get("kind") == "ServiceAccount"}
    for obj, spec in workloads(objects):
        name = spec.get("serviceAccountName")
        if not name or name == "default":
            out.append(problem("service-accounts", ref(obj), "runs as the default ServiceAccount"))
        elif accounts and name not in accounts:
            out.append(
                problem("service-accounts", ref(obj), f"ServiceAccount {name} is not defined")
            )
    return out


@rule(
    "probe-endpoints", "socialproof probes GET /readyz (readiness), /healthz (liveness) on a port"
)
def _probe_endpoints(objects: list[Obj]) -> list[Problem]:
    out = []
    for obj, spec in workloads(objects):
        if obj["kind"] not in LONG_RUNNING:
            continue
        for c in spec.get("containers") or []:
            if not is_socialproof(c):
                continue
            where = f"{ref(obj)} container {c.get('name')}"
            ports = {p.get("name") for p in c.get("ports") or []} | {
                p.get("containerPort") for p in c.get("ports") or []
            }
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                if not c.get(probe):
                    continue  # a missing probe is checkov's CKV_K8S_8 / CKV_K8S_9
                get = c[probe].get("httpGet")
                if not get or get.get("path") != path:
                    out.append(problem("probe-endpoints", where, f"{probe} must GET {path}"))
                elif get.get("port") not in ports:
                    message = f"{probe} port {get.get('port')} is not a container port"
                    out.append(problem("probe-endpoints", where, message))
    return out


@rule("host-path", "no hostPath volumes (checkov's CKV_K8S_27 knows only the Docker socket)")
def _host_path(objects: list[Obj]) -> list[Problem]:
    return [
        problem("host-path", ref(obj), f"hostPath volume {vol['name']}")
        for obj, spec in workloads(objects)
        for vol in spec.get("volumes") or []
        if "hostPath" in vol
    ]


@rule(
    "graceful-termination",
    "HTTP pods drain (preStop, then the HTTP server's graceful shutdown) and the stream processor has "
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
                        problem(
                            "graceful-termination",
                            where,
                            "no preStop sleep (≥3 s) to leave the endpoints first",
                        )
                    )
                if grace < pause + HTTP_GRACEFUL_SHUTDOWN_S + 5:
                    out.append(
                        problem(
                            "graceful-termination",
                            where,
                            f"terminationGracePeriodSeconds {grace} < preStop {pause} s + "
                            f"{HTTP_GRACEFUL_SHUTDOWN_S} s request drain + 5 s",
                        )
                    )
            elif role(c) == "worker" and grace < 60:
                out.append(
                    problem(
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
                problem("disruption-budgets", ref(obj), "no PodDisruptionBudget selects its pods")
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
            out.append(problem("autoscaling", ref(obj), "no HorizontalPodAutoscaler"))
        elif "replicas" in obj["spec"]:
            out.append(
                problem(
                    "autoscaling",
                    ref(obj),
                    "sets replicas, which fights its autoscaler on every apply",
                )
            )
        for h in hpas:
            if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
                out.append(problem("autoscaling", ref(h), "minReplicas > maxReplicas"))
    return out


@rule("processor-partitions", "stream processor replicas never exceed the event topics' partitions")
def _processor(objects: list[Obj]) -> list[Problem]:
    limit = min(t.partitions for t in PROCESSOR_TOPICS)
    out = []
    for obj, spec in workloads(objects):
        if not any(is_socialproof(c) and role(c) == "worker" for c in spec.get("containers") or []):
            continue
        replicas = obj["spec"].get("replicas", 1)
        if replicas > limit:
            out.append(
                problem(
                    "processor-partitions", ref(obj), f"{replicas} replicas > {limit} partitions"
                )
            )
        for h in _hpas_for(objects, obj):
            if h["spec"]["maxReplicas"] > limit:
                out.append(
                    problem(
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
    for _o, _s, c, where in per_container(objects):
        if not is_socialproof(c):
            continue
        value = (
            container_env(c, objects).get("SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS", {}).get("value")
        )
        if value is not None and int(value) < MIN_SESSION_TIMEOUT_MS:
            out.append(
                problem(
                    "kafka-timeouts",
                    where,
                    f"session timeout {value} ms < {MIN_SESSION_TIMEOUT_MS} ms",
                )
            )
    return out


@rule("settings", "every setting a socialproof container reads has a value or a secret reference")
def _settings(objects: list[Obj]) -> list[Problem]:
    out = []
    for _o, _s, c, where in per_container(objects):
        if not is_socialproof(c):
            continue
        cls = settings_of(c)
        if cls is None:
            out.append(
                problem(
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
                    problem("settings", where, f"{var} ({cls.__name__}.{name}) has no value")
                )
            elif is_secret_field(info) and "secretKeyRef" not in got:
                out.append(problem("settings", where, f"{var} is a secret: use a secretKeyRef"))
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
                        problem(
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
            problem(
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
                problem("network-default-deny", ref(obj), "no NetworkPolicy allows its traffic")
            )
    return out


rule("kafka-cluster", components.KAFKA_CLUSTER)(components.kafka_cluster)
rule("redis-store", components.REDIS_STORE)(components.redis_store)
rule(redis_cluster.RULE_ID, redis_cluster.REDIS_CLUSTER)(redis_cluster.redis_cluster)
