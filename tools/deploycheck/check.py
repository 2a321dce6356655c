"""The whole deploy-check, as ``make deploy-check`` runs it: every overlay built, validated,
scanned and put through our rules; the Job templates checked as they run next to the prod overlay;
one report whose every line names the tool that found the problem and its check id.

checkov runs once over all builds (it starts in about three seconds, most of the check's time);
schemas, our rules and promtool take a second or two more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.deploycheck import scanner
from tools.deploycheck.alerts import promtool_problems, runbook_problems
from tools.deploycheck.manifests import (
    DEPLOY_DIR,
    JOBS_RUN_WITH,
    BuildFailed,
    Obj,
    Problem,
    in_namespace,
    job_templates,
    kustomize_build,
    load_documents,
    namespace_of,
    overlays,
    ref,
)
from tools.deploycheck.rules import RULES
from tools.deploycheck.schemas import KUBERNETES_VERSION, custom_kinds, schema_problems
from tools.deploycheck.topics import topics_problems

#: our rules that judge a whole overlay, not a Job template beside it
OVERLAY_ONLY_RULES = {"network-default-deny"}


def check_objects(
    objects: list[Obj],
    rules: list[str] | None = None,
    validate: list[Obj] | None = None,
    scan: bool = True,
) -> list[Problem]:
    """Schemas of ``validate`` (default: every object), then checkov (with ``scan``) and our
    rules over all ``objects``; checkov's findings only about ``validate``."""
    targets = objects if validate is None else validate
    problems = [p for obj in targets for p in schema_problems(obj)]
    if scan:
        names = {ref(o) for o in targets}
        problems += [
            p for p in scanner.scan({"build": objects}).problems["build"] if p.where in names
        ]
    for rule_id in RULES if rules is None else rules:
        problems += RULES[rule_id][1](objects)
    return problems


@dataclass
class Report:
    problems: list[Problem]
    checked: dict[str, int]  # build name -> objects checked
    scan: scanner.Scan | None


def check_all(deploy_dir: Path = DEPLOY_DIR) -> Report:
    problems = topics_problems(deploy_dir)
    checked: dict[str, int] = {}
    built: dict[str, list[Obj]] = {}
    to_scan: dict[str, list[Obj]] = {}
    for overlay in overlays(deploy_dir):
        try:
            objects = kustomize_build(overlay)
        except BuildFailed as exc:
            problems.append(Problem("kustomize", "build", overlay.name, str(exc)))
            continue
        built[overlay.name] = to_scan[overlay.name] = objects
        found = check_objects(objects, scan=False)
        found += runbook_problems(objects, deploy_dir)
        found += promtool_problems(objects)
        problems += [p.at(overlay.name) for p in found]
        checked[f"overlays/{overlay.name}"] = len(objects)
    # Job templates are created with `kubectl -n NAMESPACE create` next to a deployed overlay:
    # check them in its namespace, with its ConfigMap and accounts; checkov scans them inside that
    # overlay's build (its graph checks see the network policies), each finding credited back.
    context = built.get(JOBS_RUN_WITH, [])
    job_build: dict[str, str] = {}  # Job ref -> "jobs/<template>"
    for path in job_templates(deploy_dir):
        name = f"jobs/{path.name}"
        jobs = in_namespace(load_documents(path.read_text()), namespace_of(context))
        rules = [r for r in RULES if r not in OVERLAY_ONLY_RULES]
        found = check_objects(jobs + context, rules=rules, validate=jobs, scan=False)
        names = {ref(j) for j in jobs}
        problems += [p.at(name) for p in found if any(p.where.startswith(n) for n in names)]
        target = JOBS_RUN_WITH if JOBS_RUN_WITH in to_scan else name
        to_scan[target] = to_scan.get(target, []) + jobs
        job_build.update(dict.fromkeys(names, name))
        checked[name] = len(jobs)
    scan = None
    try:
        scan = scanner.scan(to_scan) if to_scan else None
    except scanner.ScannerFailed as exc:  # no scan is a failure, never a pass
        problems.append(Problem(scanner.SCANNER, "run", "all builds", str(exc)))
    for build, found in (scan.problems if scan else {}).items():
        problems += [p.at(job_build.get(p.where, build)) for p in found]
    return Report(problems, checked, scan)


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
    scan = report.scan
    crds = sorted(set(custom_kinds().values()))
    print(
        f"deploy-check: ok ({sum(report.checked.values())} objects; kubernetes-validate "
        f"{KUBERNETES_VERSION} schemas; jsonschema: {', '.join(crds)}; "
        f"checkov {scan.version if scan else '-'}: "
        f"{scan.passed if scan else 0} checks passed, {scan.skipped if scan else 0} findings "
        f"on the skip list; {len(RULES)} socialproof rules; promtool)"
    )
    return 0
