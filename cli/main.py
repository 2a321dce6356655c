"""The ``socialproof`` command: one Typer app, one module per command group.

socialproof serve orders           # one HTTP service (catalog, orders, social, notifier)  cli/services.py
socialproof worker                 # the counters stream worker                             cli/services.py
socialproof settings               # every setting, its variable and default                cli/settingstable.py
socialproof contracts generate     # regenerate contracts/schemas/ (also: check, topics)    cli/contracts.py
socialproof topics create          # the registry's topics (also: list, tail, dump, …)      cli/topics.py
socialproof dlq list               # dead letters (also: show, replay)                      cli/deadletters.py
socialproof groups lag             # consumer groups (also: reset)                          cli/groups.py
socialproof replay rebuild         # recompute every counter, no downtime (status, drop)    cli/replay.py
socialproof explain P bought.24h   # the events behind a served figure                      cli/explain.py

Where the dev tools are installed (a checkout, not the image):

socialproof run                    # the whole stack on the embedded broker (make run)      cli/stack.py
socialproof simulate               # demo shop traffic through the APIs                     tools/simulate.py
socialproof deploy check           # validate the Kubernetes manifests (make deploy-check)  tools/deploycheck
"""

from __future__ import annotations

import typer

from cli import contracts, deadletters, explain, groups, replay, services, settingstable, topics

app = typer.Typer(help="socialproof: live, honest social proof for shops.", no_args_is_help=True)
app.command()(services.serve)
app.command()(services.worker)
app.command("settings")(settingstable.settings_table)
app.command("explain")(explain.explain)
app.add_typer(contracts.app, name="contracts")
app.add_typer(topics.app, name="topics")
app.add_typer(deadletters.app, name="dlq")
app.add_typer(groups.app, name="groups")
app.add_typer(replay.app, name="replay")


def _register_dev_tools() -> None:
    """``run``, ``simulate`` and ``deploy`` exist where ``tools/`` does (the image ships without)."""
    try:
        from cli import stack
        from tools.deploycheck.cli import deploy_app
        from tools.simulate import simulate
    except ModuleNotFoundError as exc:
        if exc.name != "tools" and not str(exc.name).startswith("tools."):
            raise
        return

    app.command()(stack.run)
    app.command("simulate")(simulate)
    app.add_typer(deploy_app, name="deploy")


_register_dev_tools()


def main() -> None:
    app()
