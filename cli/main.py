"""The ``socialproof`` command: run the dev stack, run one service, manage contracts and topics.

socialproof run                    # the whole stack on the embedded broker (make run)
socialproof serve orders           # one HTTP service (catalog, orders, social, notifier)
socialproof worker                 # the stream processor (Faust)
socialproof simulate               # demo shop traffic through the APIs (make run starts it)
socialproof topics create          # create the registry's topics on KAFKA_BOOTSTRAP_SERVERS
socialproof contracts generate     # regenerate contracts/schemas/
socialproof contracts check        # fail if the schemas are stale or incompatible
socialproof contracts topics       # show the topic registry
socialproof settings               # every setting, its variable and default
socialproof deploy check           # validate the Kubernetes manifests (make deploy-check)
"""

from __future__ import annotations

import json
import os
import signal
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="socialproof: live, honest social proof for shops.", no_args_is_help=True)
contracts_app = typer.Typer(help="The event contracts: schemas and the topic registry.")
topics_app = typer.Typer(help="Kafka topics: create, list, tail, dump, load, copy.",
                         no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(topics_app, name="topics")

console = Console()
err = Console(stderr=True)


class Service(StrEnum):
    catalog = "catalog"
    orders = "orders"
    social = "social"
    notifier = "notifier"


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _load(settings_cls):
    from pydantic import ValidationError

    try:
        return settings_cls()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings: {problems}") from None


@app.command()
def serve(service: Annotated[Service, typer.Argument(help="which HTTP service")]) -> None:
    """Run one HTTP service in the foreground."""
    from socialproof.serve import serve as run_service

    if service is Service.orders:
        from services.orders.app import create_app
        from services.orders.settings import OrdersSettings

        cfg = _load(OrdersSettings)
        run_service("orders", create_app, cfg, cfg.orders_port)
    elif service is Service.notifier:
        from services.notifier.app import create_app
        from services.notifier.settings import NotifierSettings

        cfg = _load(NotifierSettings)
        run_service("notifier", create_app, cfg, cfg.notifier_port, cfg.notifier_processes)
    elif service is Service.catalog:
        from services.catalog.app import create_app
        from services.catalog.settings import CatalogSettings

        cfg = _load(CatalogSettings)
        run_service("catalog", create_app, cfg, cfg.catalog_port)
    else:
        from services.social.app import create_app
        from services.social.settings import SocialSettings

        cfg = _load(SocialSettings)
        run_service("social", create_app, cfg, cfg.social_port)


@app.command()
def worker() -> None:
    """Run the stream processor (a Faust worker) in the foreground."""
    from services.counters.app import run_worker
    from services.counters.settings import CountersSettings

    run_worker(_load(CountersSettings))


@app.command()
def run(
    services: Annotated[
        bool, typer.Option(help="start the services, not only broker+Redis")
    ] = True,
    simulate_rate: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="SOCIALPROOF_SIMULATE_RATE",
            help="demo traffic, events per second (socialproof simulate); 0 = none",
        ),
    ] = 5.0,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="start empty: delete the embedded broker's topics and the dev Redis data first "
            "(kept across runs otherwise)",
        ),
    ] = False,
) -> None:
    """Start the whole stack (Apache Kafka, Redis, every service) until Ctrl-C.

    Topics, consumer offsets and counters are kept under the dev stack's folder, so a second
    `make run` carries on where the first stopped; --fresh starts empty."""
    from services.counters.settings import CountersSettings
    from services.notifier.settings import NotifierSettings
    from socialproof.processes import ProcessError
    from socialproof.settings import DEFAULT_PORTS
    from tools.devstack import DevStackSettings, Stack, StackConfig
    from tools.simulate import write_demo_catalog

    dev = _load(DevStackSettings)
    counters = _load(CountersSettings)
    notifier = _load(NotifierSettings)
    ports = {
        name: int(os.environ.get(f"SOCIALPROOF_{name.upper()}_PORT", default))
        for name, default in DEFAULT_PORTS.items()
    }
    token = os.environ.get("SOCIALPROOF_SERVICE_TOKEN")
    workdir = Path(dev.devstack_dir).resolve()
    token_file = None if token else workdir / "service-token"
    config = StackConfig(
        workdir=workdir,
        broker_port=dev.broker_port,
        redis_port=dev.redis_port,
        ports=ports,
        worker_web_port=counters.worker_web_port,
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        redis_url=os.environ.get("REDIS_URL"),
        service_token=token or _kept_token(token_file),
        # the demo storefront (and its unauthenticated viewer tokens) exists only in the dev stack;
        # it shows the products and viewers of the simulator's seed
        extra_env={
            "SOCIALPROOF_DEMO_ENABLED": os.environ.get("SOCIALPROOF_DEMO_ENABLED", "true"),
            "SOCIALPROOF_DEMO_CATALOG_PATH": str(workdir / "demo-catalog.json"),
        },
    )
    workdir.mkdir(parents=True, exist_ok=True)
    write_demo_catalog(
        workdir / "demo-catalog.json", seed=int(os.environ.get("SOCIALPROOF_DEMO_SEED", "42"))
    )

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt  # also during start-up, which may wait on slow parts

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    started = time.monotonic()
    stack = Stack(config)
    if fresh:
        for what in stack.wipe_local_data():
            console.print(f"--fresh: deleted {what}")
    try:
        console.print("[bold]starting socialproof…[/]")
        stack.start_infrastructure()
        if services:
            stack.start_services()
            if simulate_rate > 0:
                stack.start_simulator(simulate_rate)
        _banner(
            stack,
            time.monotonic() - started,
            token_file=token_file,
            notifier_port=notifier.notifier_port,
        )
        while True:
            stack.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\n[bold]stopping…[/]")
    except ProcessError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the stop
        stack.stop()
    console.print("stopped; no process left behind.")


def _kept_token(path: Path) -> str:
    """The dev stack's generated service token, kept beside its data so that a restarted stack
    (whose topics and counters are kept too) answers to the same token."""
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def _banner(stack, elapsed: float, token_file: Path | None, notifier_port: int) -> None:
    token = stack.service_token
    table = Table(title=f"socialproof is up in {elapsed:.1f}s", show_header=True)
    table.add_column("what")
    table.add_column("where")
    table.add_row("[bold]demo storefront[/]", f"[bold]{stack.url('notifier')}/demo[/]")
    table.add_row("storefront read API", f"{stack.url('notifier')}/v1/proof/products/p1")
    table.add_row("live updates (SSE)", f"{stack.url('notifier')}/v1/proof/stream?products=p1")
    for name in ("catalog", "orders", "social", "notifier"):
        table.add_row(f"{name} API docs", f"{stack.url(name)}/docs")
    table.add_row("stream worker", f"{stack.worker_url}/readyz")
    table.add_row("Kafka", stack.bootstrap)
    table.add_row("Redis", stack.redis_url)
    table.add_row("service token", token + (f"  (generated, kept in {token_file})"
                                            if token_file else ""))
    console.print(table)
    console.print(
        "try it:\n"
        f"  curl -s -X POST {stack.url('catalog')}/v1/products -H 'Authorization: Bearer {token}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"id":"mug-1","name":"Mug","price":"19.99","currency":"EUR"}\'\n'
        f"  curl -s -X POST {stack.url('orders')}/v1/orders -H 'Authorization: Bearer {token}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"user_id":"u1","currency":"EUR","lines":[{"product_id":"mug-1",'
        '"quantity":1,"unit_price":"19.99"}]}\'\n'
        f"  curl -s {stack.url('notifier')}/v1/proof/products/mug-1\n"
        "Ctrl-C stops everything.",
        highlight=False,
        soft_wrap=True,
    )


@topics_app.command("create")
def topics_create() -> None:
    """Create every registry topic that does not exist yet on KAFKA_BOOTSTRAP_SERVERS."""
    from socialproof.kafka import ensure_topics
    from socialproof.settings import Settings

    created = ensure_topics(_load(Settings))
    console.print(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


@contracts_app.command("generate")
def contracts_generate() -> None:
    """Regenerate the JSON Schemas in contracts/schemas/."""
    from contracts.schemagen import SCHEMA_DIR, generate

    changed = generate()
    console.print(f"{len(changed)} schema file(s) written to {SCHEMA_DIR}: {', '.join(changed)}")


@contracts_app.command("check")
def contracts_check() -> None:
    """Fail if contracts/schemas/ is stale or a change breaks its version line."""
    import json as _json

    from contracts.schemagen import SCHEMA_DIR, expected_files, incompatibilities, stale_files

    problems = []
    for name, text in expected_files().items():
        path = SCHEMA_DIR / name
        if path.exists():
            problems += [
                f"{name}: {p}"
                for p in incompatibilities(_json.loads(path.read_text()), _json.loads(text))
            ]
    stale = stale_files()
    if problems:
        raise _fail(
            "incompatible within a version line (start a new schema_version):\n  "
            + "\n  ".join(problems)
        )
    if stale:
        raise _fail(f"stale schemas: {', '.join(stale)}; run `socialproof contracts generate`")
    console.print("contracts/schemas is up to date and compatible")


@contracts_app.command("topics")
def contracts_topics(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the topic registry."""
    from contracts.topics import ALL_TOPICS

    rows = [
        {
            "name": t.name,
            "key": t.key,
            "events": [cls.EVENT_TYPE for cls in t.value_types],
            "writer": t.writer,
            "partitions": t.partitions,
            "cleanup_policy": t.cleanup_policy,
            "retention_ms": t.retention_ms,
        }
        for t in ALL_TOPICS
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="topic registry")
    for col in ("name", "key", "events", "writer", "partitions", "cleanup", "retention"):
        table.add_column(col)
    for r in rows:
        retention = "forever" if r["retention_ms"] == -1 else f"{r['retention_ms'] // 86_400_000}d"
        table.add_row(
            r["name"],
            r["key"],
            ", ".join(r["events"]) or "(dead letters)",
            r["writer"],
            str(r["partitions"]),
            r["cleanup_policy"],
            retention,
        )
    console.print(table)


@app.command("settings")
def settings_table(
    as_markdown: Annotated[bool, typer.Option("--markdown")] = False,
    readme: Annotated[bool, typer.Option("--update-readme", help="rewrite README's table")] = False,
) -> None:
    """Every setting: environment variable, default, meaning."""
    if readme:
        console.print("README.md updated" if update_readme() else "README.md already up to date")
        return
    rows = settings_rows()
    if as_markdown:
        print(settings_markdown(), end="")
        return
    table = Table(title="settings")
    for col in ("variable", "default", "used by", "meaning"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    console.print(table)


def settings_markdown() -> str:
    """The settings table as markdown (README's "Settings" section is generated from it)."""
    lines = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r[0]}` | `{r[1]}` | {r[2]} | {r[3]} |" for r in settings_rows()]
    return "\n".join(lines) + "\n"


def update_readme(path: Path = Path(__file__).resolve().parent.parent / "README.md") -> bool:
    """Rewrite the README's settings table; returns True when it changed."""
    text = path.read_text()
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    new = head + start + settings_markdown() + end + tail
    if new != text:
        path.write_text(new)
    return new != text


def settings_rows() -> list[tuple[str, str, str, str]]:
    from pydantic import AliasChoices

    from services.catalog.settings import CatalogSettings
    from services.counters.settings import CountersSettings
    from services.notifier.settings import NotifierSettings
    from services.orders.settings import OrdersSettings
    from services.social.settings import SocialSettings
    from socialproof import settings as s
    from tools.devstack import DevStackSettings

    owners = {
        s.Settings: "all",
        s.PrivacyDefaults: "social, worker, notifier",
        CatalogSettings: "catalog",
        OrdersSettings: "orders",
        SocialSettings: "social",
        CountersSettings: "worker",
        NotifierSettings: "notifier",
        DevStackSettings: "make run",
    }
    rows: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    for cls, owner in owners.items():
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                var = str(alias.choices[0])
            else:
                var = f"SOCIALPROOF_{name.upper()}"
            if var in seen:
                continue
            seen.add(var)
            default = info.default
            if default is None:
                shown = "(unset)"
            elif hasattr(default, "get_secret_value"):
                shown = "(secret)"
            elif default == "":
                shown = "(empty)"
            else:
                shown = str(default)
            rows.append((var, shown, owner, info.description or ""))
    return rows


def _register_topic_operations() -> None:
    from cli.ops import register

    register(app, topics_app)


_register_topic_operations()


def _register_simulate() -> None:
    from tools.simulate import simulate

    app.command("simulate")(simulate)


_register_simulate()


def _register_deploy() -> None:
    try:
        from tools.deploycheck.cli import deploy_app
    except ModuleNotFoundError as exc:  # the service image ships without tools/
        if exc.name not in ("tools", "tools.deploycheck"):
            raise
        return
    app.add_typer(deploy_app, name="deploy")


_register_deploy()


def main() -> None:
    app()
