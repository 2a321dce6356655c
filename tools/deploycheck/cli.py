"""The ``socialproof deploy`` commands (registered by ``cli/main.py``):

    socialproof deploy topics            # regenerate the KafkaTopic resources from the registry
    socialproof deploy topics --check    # fail if the checked-in KafkaTopic file is stale
    socialproof deploy check             # build every overlay, validate, scan, apply our rules
    socialproof deploy rules             # what deploy-check applies: checkov, skip list, ours

Imports stay light here (the socialproof CLI loads this module on every start); the checks load
their tools when they run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tools.deploycheck.manifests import DEPLOY_DIR

deploy_app = typer.Typer(help="Kubernetes deployment: KafkaTopic generation and deploy-check.")


@deploy_app.command("topics")
def topics(
    check: Annotated[bool, typer.Option("--check", help="only fail if the file is stale")] = False,
    deploy_dir: Annotated[Path, typer.Option(help="the deploy directory")] = DEPLOY_DIR,
) -> None:
    """Write the KafkaTopic resources for every registry topic (components/kafka/topics.yaml)."""
    from tools.deploycheck import topics as t

    path = deploy_dir / t.TOPICS_FILE
    if check:
        if t.stale_topics(deploy_dir):
            print(f"{path} is stale: run `socialproof deploy topics`", file=sys.stderr)
            raise typer.Exit(1)
        print(f"{path} matches contracts/topics.py")
        return
    path.write_text(t.render_topics())
    print(f"wrote {len(t.ALL_TOPICS)} KafkaTopic resources to {path}")


@deploy_app.command("check")
def check(
    deploy_dir: Annotated[Path, typer.Option(help="the deploy directory")] = DEPLOY_DIR,
) -> None:
    """Build every overlay, validate it offline, scan it with checkov and apply our rules."""
    from tools.deploycheck.check import main_check

    raise typer.Exit(main_check(deploy_dir))


@deploy_app.command("rules")
def rules() -> None:
    """List what deploy-check applies: checkov's checks, its skip list, and our own rules."""
    from tools.deploycheck import scanner
    from tools.deploycheck.rules import RULES

    print("checkov (every Kubernetes check; these replaced rules of our own):")
    for check_id, description in scanner.RELIED_ON.items():
        print(f"  {check_id:12} {description}")
    print("checkov skip list:")
    for skip in scanner.SKIPS:
        scope = f" (only {', '.join(sorted(skip.only))})" if skip.only else ""
        print(f"  {skip.check_id:12} {skip.reason}{scope}")
    print("socialproof (our own rules):")
    own = {
        "topics": "components/kafka/topics.yaml is what contracts/topics.py generates",
        "runbook": "every alert has a deploy/README.md section and its runbook_url points at it",
        **{rule_id: description for rule_id, (description, _fn) in RULES.items()},
    }
    for rule_id, description in own.items():
        print(f"  {rule_id:22} {description}")
    from tools.deploycheck.schemas import KUBERNETES_VERSION, custom_kinds

    print(f"kubernetes-validate: Kubernetes {KUBERNETES_VERSION}'s schemas, strict")
    print("jsonschema (crd-schema), the custom resources:")
    for (api_version, kind), source in custom_kinds().items():
        print(f"  {api_version} {kind}: {source}")
    print("promtool (promql): the alert rules' PromQL")
