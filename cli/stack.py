"""``socialproof run``: the whole dev stack (:mod:`tools.devstack`) with the demo storefront and
simulated traffic, until Ctrl-C. Registered only where the dev tools are installed (not in the
image).

The console (:mod:`tools.console`) shows each process once it is ready, the banner, warnings and
errors, and a summary of activity; ``--verbose`` every line. The log files under the dev stack's
folder (``.devstack/logs/<process>.log``) keep every line either way."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import err, load, out


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
    redis_cluster: Annotated[
        bool,
        typer.Option(
            "--redis-cluster",
            help="run on a local Redis Cluster (3 masters + 3 replicas under the dev stack's "
            "folder) instead of one redis-server; REDIS_URL naming a node of an existing cluster "
            "needs no option",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="echo every line the processes log (default: warnings and errors, and a summary "
            "of activity; the log files in the dev stack's folder keep everything either way)",
        ),
    ] = False,
) -> None:
    """Start the whole stack (Apache Kafka, Redis, every service) until Ctrl-C.

    Topics, consumer offsets and counters are kept under the dev stack's folder, so a second
    `make run` carries on where the first stopped; --fresh starts empty. REDIS_URL may name an
    existing Redis or any node of a Redis Cluster; --redis-cluster starts a local cluster."""
    from services.counters.settings import CountersSettings
    from services.notifier.settings import NotifierSettings
    from socialproof.processes import ProcessError
    from socialproof.settings import DEFAULT_PORTS
    from tools.console import Activity, Console
    from tools.devstack import DevStackSettings, Stack, StackConfig
    from tools.simulate import write_demo_catalog

    if redis_cluster and os.environ.get("REDIS_URL"):
        err.print(f"[bold red]error:[/] --redis-cluster starts a local Redis Cluster, but "
                  f"REDIS_URL={os.environ['REDIS_URL']} names one to use: unset one of them")
        raise typer.Exit(2)
    dev = load(DevStackSettings)
    counters = load(CountersSettings)
    notifier = load(NotifierSettings)
    ports = {
        name: int(os.environ.get(f"SOCIALPROOF_{name.upper()}_PORT", default))
        for name, default in DEFAULT_PORTS.items()
    }
    token = os.environ.get("SOCIALPROOF_SERVICE_TOKEN")
    workdir = Path(dev.devstack_dir).resolve()
    token_file = None if token else workdir / "service-token"
    console = Console(verbose=verbose)
    config = StackConfig(
        workdir=workdir,
        broker_port=dev.broker_port,
        redis_port=dev.redis_port,
        ports=ports,
        worker_web_port=counters.worker_web_port,
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        redis_url=os.environ.get("REDIS_URL"),
        redis_cluster=redis_cluster,
        service_token=token or _kept_token(token_file),
        # the demo storefront (and its unauthenticated viewer tokens) exists only in the dev stack;
        # it shows the products and viewers of the simulator's seed
        extra_env={
            "SOCIALPROOF_DEMO_ENABLED": os.environ.get("SOCIALPROOF_DEMO_ENABLED", "true"),
            "SOCIALPROOF_DEMO_CATALOG_PATH": str(workdir / "demo-catalog.json"),
        },
        console=console,
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
    activity = None
    if fresh:
        for what in stack.wipe_local_data():
            out.print(f"--fresh: deleted {what}")
    try:
        out.print("[bold]starting socialproof…[/]")
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
        console.starting = False
        if services:
            activity = Activity(console, f"{stack.worker_url}/metrics",
                                f"{stack.url('notifier')}/metrics")
        while True:
            stack.check_alive()
            if activity is not None:
                activity.tick()
            time.sleep(0.25)
    except KeyboardInterrupt:
        console.end_status()  # also wipes the ^C the terminal echoed on it
        out.print("[bold]stopping…[/]")
    except ProcessError as exc:
        console.end_status()
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the stop
        if activity is not None:
            activity.close()
        stack.stop()
    out.print("stopped; no process left behind.")


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
    table.add_row("merchant insights", f"{stack.url('notifier')}/insights (sign in with the token)")
    for name in ("catalog", "orders", "social", "notifier"):
        table.add_row(f"{name} API docs", f"{stack.url(name)}/docs")
    table.add_row("stream worker", f"{stack.worker_url}/readyz")
    table.add_row("Kafka", stack.bootstrap)
    table.add_row("Redis", stack.redis_url)
    table.add_row("service token", token + (f"  (generated, kept in {token_file})"
                                            if token_file else ""))
    out.print(table)
    out.print(
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
