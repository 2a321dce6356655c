"""The alerting rules: promtool checks their PromQL, and every alert has a runbook.

``promtool check rules`` (Debian's ``prometheus`` package; ``make deploy-check`` installs it) is
the field's checker for Prometheus rules: PromQL syntax, durations, labels. The runbook rule is
ours: every alert has a ``### AlertName`` section in ``deploy/README.md`` and its ``runbook_url``
points at it, so whoever is paged lands on what to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tools.deploycheck.manifests import DEPLOY_DIR, Obj, Problem


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
                Problem(
                    "socialproof",
                    "runbook",
                    f"alert {name}",
                    f"no '### {name}' section in deploy/README.md",
                )
            )
        if not (r.get("annotations") or {}).get("runbook_url", "").endswith(f"#{name.lower()}"):
            out.append(
                Problem(
                    "socialproof",
                    "runbook",
                    f"alert {name}",
                    "runbook_url does not point at its README section",
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
                "promtool",
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
        return [
            Problem(
                "promtool",
                "promql",
                "PrometheusRule",
                (result.stdout + result.stderr).strip()[-800:],
            )
        ]
    return []
