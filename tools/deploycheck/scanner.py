"""checkov, the field's Kubernetes scanner, over the rendered manifests.

The pod-security, resources, probes and image policies are checkov's (``--framework kubernetes``)
rather than ours: :data:`RELIED_ON` lists the checks that took over deploy-check's former rules,
each broken on purpose by a test in ``tests/deploy/test_scanner.py``. Every other checkov
Kubernetes check runs too, and any finding fails the build, except those in :data:`SKIPS`, each
with the reason it does not fit this project.

checkov scans what ``kubectl kustomize`` rendered (one file per build, written here, so a finding
maps back to the object by its line range), not the kustomize sources. It runs offline: no API key,
``--skip-download`` and ``BC_SKIP_MAPPING`` (no guidelines from the vendor's platform),
``CKV_SKIP_PACKAGE_UPDATE_CHECK`` (no look-up of a newer version on PyPI).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from tools.deploycheck.manifests import Obj, Problem, pod_spec, ref, venv_tool

SCANNER = "checkov"

#: checkov checks that replaced deploy-check's own rules (the old rule id in parentheses)
RELIED_ON: dict[str, str] = {
    "CKV_K8S_8": "liveness probe configured (probes)",
    "CKV_K8S_9": "readiness probe configured (probes)",
    "CKV_K8S_10": "CPU request set (resources)",
    "CKV_K8S_11": "CPU limit set (resources)",
    "CKV_K8S_12": "memory request set (resources)",
    "CKV_K8S_13": "memory limit set (resources)",
    "CKV_K8S_14": "image tag fixed, not latest or blank (pinned-images)",
    "CKV_K8S_16": "container not privileged (no-privilege-escalation)",
    "CKV_K8S_17": "no host PID namespace (host-isolation)",
    "CKV_K8S_18": "no host IPC namespace (host-isolation)",
    "CKV_K8S_19": "no host network namespace (host-isolation)",
    "CKV_K8S_20": "allowPrivilegeEscalation false (no-privilege-escalation)",
    "CKV_K8S_22": "read-only root filesystem (read-only-root-fs)",
    "CKV_K8S_23": "no root containers: runAsNonRoot or a non-zero runAsUser (non-root)",
    "CKV_K8S_25": "no added capabilities (drop-capabilities)",
    "CKV_K8S_28": "NET_RAW dropped (drop-capabilities)",
    "CKV_K8S_31": "seccomp profile RuntimeDefault (seccomp)",
    "CKV_K8S_37": "capabilities: drop ALL (drop-capabilities)",
    "CKV_K8S_38": "service account token not mounted (service-accounts)",
    "CKV_K8S_40": "high UID, never 0 (non-root)",
}


@dataclass(frozen=True)
class Skip:
    check_id: str
    reason: str
    #: only these objects ("Kind/name"); empty: the check does not run at all
    only: frozenset[str] = field(default_factory=frozenset)


#: the checks that do not fit, and why; nothing else may be skipped
SKIPS: tuple[Skip, ...] = (
    Skip(
        "CKV_K8S_15",
        "imagePullPolicy Always: every image is pinned to a release tag (CKV_K8S_14) that is "
        "never re-pushed, so Always only makes each pod start depend on the registry",
    ),
    Skip(
        "CKV_K8S_35",
        "secrets as files: the services read every setting from the environment "
        "(pydantic-settings); our `settings` rule makes each secret a secretKeyRef, never a "
        "value in a manifest",
    ),
    Skip(
        "CKV_K8S_43",
        "image digests: releases are pinned by version tag (CKV_K8S_14, the project version, "
        "which kustomize `images:` sets per overlay); a digest would change with every build",
    ),
    Skip(
        "CKV_K8S_40",
        "high UID: the redis image runs as its own user 999, which owns the data directory on "
        "the volume; it never runs as root (CKV_K8S_23 still holds)",
        only=frozenset({"StatefulSet/redis", "StatefulSet/redis-cluster"}),
    ),
)


class ScannerFailed(RuntimeError):
    pass


@dataclass
class Scan:
    problems: dict[str, list[Problem]]  # build name -> findings (empty list: clean)
    passed: int
    skipped: int
    version: str


def checkov_version() -> str:
    return metadata.version("checkov")


def checkov_binary() -> str:
    """checkov from the checkov wheel of the deploy extra (or PATH)."""
    found = venv_tool("checkov")
    if not found:
        raise ScannerFailed(
            "checkov not found: install the project with `pip install -e '.[deploy]'`, "
            "or run `make deploy-check`"
        )
    return found


def offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BC_API_KEY", "PRISMA_API_URL")}
    env.update(BC_SKIP_MAPPING="TRUE", CKV_SKIP_PACKAGE_UPDATE_CHECK="true")
    return env


def _write(path: Path, objects: list[Obj]) -> list[tuple[int, int, Obj]]:
    """Write the objects as one YAML stream; (first line, last line, object) of each."""
    import yaml

    spans, lines = [], 0
    with path.open("w") as f:
        for obj in objects:
            text = "---\n" + yaml.safe_dump(obj, sort_keys=False)
            count = text.count("\n")
            spans.append((lines + 1, lines + count, obj))
            lines += count
            f.write(text)
    return spans


def _object_at(spans: list[tuple[int, int, Obj]], line: int) -> Obj | None:
    return next((obj for first, last, obj in spans if first <= line <= last), None)


def scan(builds: dict[str, list[Obj]]) -> Scan:
    """One checkov run over every build; the findings per build, the skip list applied."""
    global_skips = sorted(s.check_id for s in SKIPS if not s.only)
    with tempfile.TemporaryDirectory(prefix="deploycheck-") as tmp:
        files: dict[str, tuple[str, list[tuple[int, int, Obj]]]] = {}
        for i, (name, objects) in enumerate(builds.items()):
            spans = _write(Path(tmp) / f"{i}.yaml", objects)
            files[f"/{i}.yaml"] = (name, spans)
        result = subprocess.run(
            [
                checkov_binary(),
                *("--directory", tmp, "--framework", "kubernetes", "--output", "json"),
                *("--skip-download", "--skip-check", ",".join(global_skips)),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=offline_env(),
            cwd=tmp,
        )
    if result.returncode not in (0, 1):
        raise ScannerFailed(f"checkov exited {result.returncode}: {result.stderr.strip()[-800:]}")
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise ScannerFailed(f"checkov printed no JSON report: {result.stdout[:300]!r}") from exc
    reports = reports if isinstance(reports, list) else [reports]

    problems: dict[str, list[Problem]] = {name: [] for name in builds}
    seen: set[tuple[str, int]] = set()  # (file, first line) of every object checkov evaluated
    passed = skipped = 0
    for report in reports:
        if report.get("check_type") != "kubernetes":
            continue
        if report.get("summary", {}).get("parsing_errors"):
            raise ScannerFailed(f"checkov could not parse a rendered build: {report['summary']}")
        results = report.get("results", {})
        for check in results.get("passed_checks", []):
            seen.add((check["file_path"], check["file_line_range"][0]))
            passed += 1
        for check in results.get("failed_checks", []):
            name, spans = files[check["file_path"]]
            seen.add((check["file_path"], check["file_line_range"][0]))
            obj = _object_at(spans, check["file_line_range"][0])
            where = ref(obj) if obj is not None else check["resource"]
            if any(s.check_id == check["check_id"] and where in s.only for s in SKIPS):
                skipped += 1
                continue
            problems[name].append(Problem(SCANNER, check["check_id"], where, check["check_name"]))
    # A workload checkov did not evaluate would pass silently: that is a failure too.
    for path, (name, spans) in files.items():
        lines = {line for p, line in seen if p == path}
        for first, last, obj in spans:
            if pod_spec(obj) is not None and not any(first <= n <= last for n in lines):
                problems[name].append(
                    Problem(SCANNER, "not-scanned", ref(obj), "checkov did not evaluate it")
                )
    return Scan(problems, passed, skipped, checkov_version())
