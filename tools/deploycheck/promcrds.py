"""prometheus-operator's CRD schemas, from the project's Go module: fetched once, offline after.

prometheus-operator publishes its CRD YAML with its GitHub releases, its Helm chart and its Go
module (``example/prometheus-operator-crd/``). The Go module proxy serves a module version as a
plain zip over HTTPS, so it is fetched here with ``urllib``, no Go toolchain needed:
:data:`URL` of :data:`VERSION`, checked against :data:`SHA256` (pinned here; it is the zip whose Go
``h1:`` hash is the one sum.golang.org's checksum database has for this version). The zip is kept
in the cache the Strimzi CRDs use (:func:`crds.cache_root`), only once verified; from it the CRD
YAMLs of :data:`KINDS` (the monitoring.coreos.com kinds the manifests use) are extracted into a
folder renamed into place when complete. ``make deploy-check`` runs ``python -m
tools.deploycheck.crds``, which fetches these too; the tests fetch on first use.

:func:`schemas` reads the extracted CRDs: each kind's :data:`API_VERSION` ``openAPIV3Schema``, made
strict the way Strimzi's are (:func:`crds.strict`). Not every version of the module is served
(v0.95.x and v0.87.0 were refused with 403 "not available"; v0.93.0 and v0.92.1 are served), so
a new pin has to be tried first.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

from tools.deploycheck.crds import CrdsUnavailable, Schema, cache_root, install, strict

MODULE = "github.com/prometheus-operator/prometheus-operator"
VERSION = "v0.93.0"
#: SHA-256 of the Go module proxy's zip of :data:`VERSION` (4,596,130 bytes)
SHA256 = "0975ee36a65fb70c6e16f7e0553e21c94f7e25323fef62857d428e62fd3abf11"
URL = f"https://proxy.golang.org/{MODULE}/@v/{VERSION}.zip"
GROUP = "monitoring.coreos.com"
API_VERSION = "v1"
#: kind -> its plural, which names its CRD file in the module
KINDS = {"PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules"}
SOURCE = f"prometheus-operator {VERSION} CRD"


def module_zip() -> Path:
    return cache_root() / f"prometheus-operator-{VERSION}.zip"


def _stamp() -> str:
    return f"{VERSION} sha256:{SHA256}\n{' '.join(sorted(KINDS))}\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(target: Path) -> None:
    """:data:`URL` into ``target``, only if its SHA-256 is the pinned one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{target.name}-", dir=target.parent)
    part = Path(name)
    try:
        with open(fd, "wb") as out:
            try:
                with urllib.request.urlopen(URL, timeout=120) as response:
                    while block := response.read(1 << 20):
                        out.write(block)
            except urllib.error.HTTPError as exc:
                body = exc.read(300).decode("utf-8", "replace").strip()
                why = f"HTTP {exc.code} {exc.reason}" + (f": {body}" if body else "")
                raise CrdsUnavailable(f"fetching {URL} failed: {why}") from exc
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                why = getattr(exc, "reason", None) or exc
                raise CrdsUnavailable(f"fetching {URL} failed: {why}") from exc
        got = _sha256(part)
        if got != SHA256:
            raise CrdsUnavailable(
                f"refused {URL}: its SHA-256 is {got}, not the pinned {SHA256} "
                "(tools/deploycheck/promcrds.py); nothing was kept"
            )
        part.chmod(0o644)  # mkstemp made it private
        part.rename(target)
    finally:
        part.unlink(missing_ok=True)


def _verified_zip() -> Path:
    path = module_zip()
    if not path.exists():
        _download(path)
    got = _sha256(path)
    if got != SHA256:
        raise CrdsUnavailable(
            f"refused {path}: its SHA-256 is {got}, not the pinned {SHA256}; "
            f"remove it and run again to fetch {URL}"
        )
    return path


def _extract(archive: Path, staging: Path) -> None:
    """Only the CRD YAMLs of :data:`KINDS`, each checked to be that kind's CRD."""
    with zipfile.ZipFile(archive) as module:
        for kind, plural in KINDS.items():
            member = f"{MODULE}@{VERSION}/example/prometheus-operator-crd/{GROUP}_{plural}.yaml"
            try:
                text = module.read(member)
            except KeyError:
                raise CrdsUnavailable(f"{archive} has no {member}") from None
            crd = _load(text)
            if (crd["spec"]["group"], crd["spec"]["names"]["kind"]) != (GROUP, kind):
                raise CrdsUnavailable(f"{member} is not the CRD of {GROUP} {kind}")
            (staging / f"{kind}.yaml").write_bytes(text)


def ensure_prometheus_operator(echo: bool = False) -> Path:
    """The folder of the pinned release's CRDs of :data:`KINDS`, fetched on first use."""
    target = cache_root() / f"prometheus-operator-{VERSION}"
    complete = target / ".complete"
    if complete.exists() and complete.read_text() == _stamp():
        return target
    if echo:
        print(f"fetching prometheus-operator {VERSION}'s CRDs (once) into {target} ...", flush=True)
    archive = _verified_zip()
    return install(target, lambda staging: _extract(archive, staging), _stamp())


def _load(text: bytes | str) -> Any:
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def python_patterns(schema: Any) -> Any:
    """The CRDs' ``pattern`` regexes are Go's (RE2), which takes a flag group anywhere; Python's
    ``re`` takes it only at the start: ``^(?i)(abort|warn)?$`` becomes ``(?i)^(abort|warn)?$``.
    A pattern ``re`` still cannot compile is an error here, not a crash while validating."""
    if isinstance(schema, list):
        return [python_patterns(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: python_patterns(v) for k, v in schema.items()}
    if isinstance(schema.get("pattern"), str):
        out["pattern"] = re.sub(r"^\^\((\?[a-zA-Z]+)\)", r"(\1)^", schema["pattern"])
        try:
            re.compile(out["pattern"])
        except re.error as exc:
            what = f"a CRD pattern Python cannot use: {schema['pattern']}: {exc}"
            raise CrdsUnavailable(what) from exc
    return out


@cache
def schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> the strict JSON schema of each prometheus-operator kind used."""
    folder = ensure_prometheus_operator()
    found = {}
    for kind in KINDS:
        crd = _load((folder / f"{kind}.yaml").read_text())
        served = [v for v in crd["spec"]["versions"] if v["name"] == API_VERSION and v["served"]]
        if not served:
            raise CrdsUnavailable(f"prometheus-operator {VERSION} serves no {API_VERSION} {kind}")
        schema = served[0]["schema"]["openAPIV3Schema"]
        found[(f"{GROUP}/{API_VERSION}", kind)] = python_patterns(strict(schema))
    return found
