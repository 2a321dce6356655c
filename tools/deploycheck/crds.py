"""Strimzi's CRD schemas, as Strimzi publishes the means to make them: fetched once, offline after.

Strimzi ships its CRD YAML only with GitHub releases and its Helm chart, which no registry reachable
here serves; Maven Central has the model they are generated from (``io.strimzi:api``) and Strimzi's
own generator (``io.strimzi:crd-generator``). ``strimzi/pom.xml`` pins both (why these versions:
see its comment); :func:`ensure_strimzi` fetches them with Maven once, runs the generator the way
Strimzi's build does, and keeps the result in a cache outside git (``~/.cache/socialproof/crds/``,
or ``SOCIALPROOF_CRD_CACHE``): the generated YAML as is, and per kind the ``v1beta2``
``openAPIV3Schema`` made strict (:func:`strict`) as JSON, which :mod:`schemas` validates against.
The copy goes to a temporary folder renamed into place when complete, as the Kafka jars do, so an
interrupted fetch is never taken for a finished one (:func:`install`, which ``promcrds.py`` uses
too for prometheus-operator's CRDs, fetched from its Go module into the same cache). ``make
deploy-check`` runs this module first (``python -m tools.deploycheck.crds``), which fetches both;
the tests fetch on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

POM = Path(__file__).with_name("strimzi") / "pom.xml"
API_VERSION = "v1beta2"
GROUP = "kafka.strimzi.io"
#: kind -> (the model class, the API versions Strimzi's build generates it with)
STRIMZI_KINDS = {
    "Kafka": ("io.strimzi.api.kafka.model.kafka.Kafka", "v1beta2"),
    "KafkaNodePool": ("io.strimzi.api.kafka.model.nodepool.KafkaNodePool", "v1beta2"),
    "KafkaTopic": ("io.strimzi.api.kafka.model.topic.KafkaTopic", "v1alpha1,v1beta1,v1beta2"),
}
INSTALL = (
    "Strimzi's CRD schemas are generated with Java 17+ and Maven: "
    "`sudo apt-get install -y openjdk-17-jre-headless maven` (make deploy-check does this as root)"
)

Schema = dict[str, Any]


class CrdsUnavailable(RuntimeError):
    pass


def strimzi_version() -> str:
    """The pinned Strimzi release whose CRDs the manifests must satisfy (the pom's api version)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:strimzi.api.version", ns)
    assert node is not None and node.text, f"{POM} names no strimzi.api.version"
    return node.text.strip()


def cache_root() -> Path:
    configured = os.environ.get("SOCIALPROOF_CRD_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "socialproof" / "crds"


def strict(schema: Any) -> Any:
    """A CRD's structural schema as JSON Schema that fails on unknown fields, as ``kubectl apply``
    with strict field validation does: every object with ``properties`` gets
    ``additionalProperties: false`` unless it preserves unknown fields (a Kafka ``config``) or says
    otherwise; descriptions are dropped. CEL rules (``x-kubernetes-validations``) are left to the
    API server."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if k != "description"}
    if "properties" in schema:  # a property may be called "description": keep it
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-2000:]  # Maven reports its errors on stdout
        raise CrdsUnavailable(f"{what} failed ({' '.join(argv[:6])} ...):\n{output}")


def _generate(staging: Path, version: str) -> None:
    mvn, java = shutil.which("mvn"), shutil.which("java")
    if mvn is None or java is None:
        raise CrdsUnavailable(INSTALL)
    libs = staging / "libs"
    _run(
        [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
        f"fetching Strimzi {version}'s model and CRD generator from Maven Central",
    )  # fmt: skip
    for kind, (model, versions) in STRIMZI_KINDS.items():
        _run(
            [java, "-cp", f"{libs}/*", "io.strimzi.crdgenerator.CrdGenerator",
             "--label", "app:strimzi", "--label", "strimzi.io/crd-install:true",
             "--target-kube", "1.16+", "--crd-api-version", "v1", "--api-versions", versions,
             "--storage-version", API_VERSION, "--yaml", f"{model}={staging / kind}.yaml"],
            f"Strimzi's CRD generator on {kind}",
        )  # fmt: skip
        (staging / f"{kind}.json").write_text(json.dumps(_schema_of(staging / f"{kind}.yaml")))
    shutil.rmtree(libs)  # Maven keeps its own copy in ~/.m2


def _schema_of(crd_file: Path) -> Schema:
    import yaml

    crd = yaml.safe_load(crd_file.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION]
    return strict(served["schema"]["openAPIV3Schema"])


def install(target: Path, fill: Callable[[Path], None], stamp: str) -> Path:
    """Make ``target`` with ``fill`` in a temporary folder beside it, renamed into place when
    complete, so an interrupted fetch is never taken for a finished one; ``.complete`` holds
    ``stamp`` (what was made), and a folder with another stamp is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent))
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / ".complete").write_text(stamp)
    staging.chmod(0o755)  # mkdtemp made it private
    complete = target / ".complete"
    if target.exists() and not (complete.exists() and complete.read_text() == stamp):
        shutil.rmtree(target)  # made from another pin or another set of kinds
    try:
        staging.rename(target)
    except OSError:  # another process finished first: its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
        if not complete.exists():
            raise
    return target


def ensure_strimzi(echo: bool = False) -> Path:
    """The folder of the pinned Strimzi release's CRDs, generated on first use."""
    version = strimzi_version()
    target = cache_root() / f"strimzi-{version}"
    if (target / ".complete").exists():
        return target
    if echo:
        print(f"generating Strimzi {version}'s CRD schemas (once) into {target} ...", flush=True)
    return install(target, lambda staging: _generate(staging, version), version + "\n")


@cache
def strimzi_schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> the strict JSON schema of each Strimzi kind the manifests use."""
    folder = ensure_strimzi()
    return {
        (f"{GROUP}/{API_VERSION}", kind): json.loads((folder / f"{kind}.json").read_text())
        for kind in STRIMZI_KINDS
    }


def main() -> int:
    """Fetch every CRD schema deploy-check uses (``make deploy-check`` runs this first)."""
    from tools.deploycheck import promcrds

    try:
        strimzi = ensure_strimzi(echo=True)
        prometheus_operator = promcrds.ensure_prometheus_operator(echo=True)
    except CrdsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Strimzi {strimzi_version()} CRD schemas: {strimzi}")
    print(f"prometheus-operator {promcrds.VERSION} CRD schemas: {prometheus_operator}")
    return 0


if __name__ == "__main__":
    # run as tools.deploycheck.crds, not __main__: promcrds raises that module's CrdsUnavailable
    from tools.deploycheck import crds

    raise SystemExit(crds.main())
