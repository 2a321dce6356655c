"""The embedded development stack: Apache Kafka, Redis, and every service, each as its own
process. ``make run`` (``socialproof run``) starts it; Ctrl-C stops it. Each process's output
goes whole to ``.devstack/logs/<name>.log``; the console (:mod:`tools.console`) shows when each
is ready, and its warnings and errors (every line with ``--verbose``).

- Broker: Apache Kafka as one KRaft process (:mod:`tools.embeddedkafka`, jars from Maven
  Central) with its log dirs under ``.devstack/kafka``, so topics survive a restart, unless
  ``KAFKA_BOOTSTRAP_SERVERS`` names an existing Kafka.
- Redis: Debian's ``redis-server`` with append-only persistence under ``.devstack/redis``,
  unless ``REDIS_URL`` names an existing Redis, or any node of an existing Redis Cluster (every
  process finds out by asking that node: ``socialproof.redis.connect_store``; the worker and
  readers then use the sharded layout of ``contracts/layout.py``). ``socialproof run
  --redis-cluster`` starts a local one instead: 3 masters + 3 replicas of the same
  ``redis-server`` under ``.devstack/redis-cluster`` (:mod:`tools.rediscluster`; formed once in
  2.2-4 s, then reused with its data), so the demo runs on a cluster with nothing else to set.
- Topics are created from the contracts registry; services get a generated service token (kept in
  ``.devstack/service-token`` by ``socialproof run``) when
  ``SOCIALPROOF_SERVICE_TOKEN`` is unset.

The test fixtures use the same process classes (:mod:`socialproof.processes`) on free ports.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from socialproof.processes import (
    ManagedProcess,
    ProcessError,
    port_in_use,
    service_argv,
    wait_until,
    worker_argv,
)
from socialproof.settings import DEFAULT_PORTS
from tools.console import Console

# Every local process the stack starts gets this: Faust's data directory (empty: the worker keeps
# no Faust tables) goes to the temp dir, not into the working directory of every dev stack, test
# and bench run. Group timings and fetch waits are the settings' defaults, as on a real cluster.
LOCAL_ENV = {
    "FAUST_DATADIR": str(Path(tempfile.gettempdir()) / "socialproof-faust-{conf.id}-data"),
}

COLORS = ["36", "33", "35", "32", "34", "91", "96", "93"]


class DevStackSettings(BaseSettings):
    """Only for ``make run`` / ``socialproof run``: where the embedded parts listen."""

    model_config = SettingsConfigDict(env_prefix="SOCIALPROOF_", extra="ignore", frozen=True)

    broker_port: int = Field(default=9092, ge=1, le=65535, description="embedded broker port")
    redis_port: int = Field(default=6390, ge=1, le=65535, description="dev redis-server port")
    devstack_dir: str = Field(default=".devstack", description="dev stack data and log folder")


class StackError(ProcessError):
    """Something the operator must fix; the message says what."""


# --- the broker and Redis ------------------------------------------------------------------------


def embedded_broker(port: int, data_dir: Path, **kwargs: object) -> ManagedProcess:
    """Apache Kafka, one KRaft process on ``port`` with its log dirs under ``data_dir`` (not
    started). ``kwargs`` go to :class:`ManagedProcess` (log path, echo)."""
    from tools.embeddedkafka import single_node

    return single_node(port, data_dir, **kwargs)


def wait_for_broker(
    bootstrap: str, timeout: float = 60.0, proc: ManagedProcess | None = None
) -> None:
    """Until the broker answers a metadata request naming at least one broker (a KRaft broker
    answers only once it has caught up with the controller); fails fast if ``proc`` dies."""
    from confluent_kafka.admin import AdminClient

    # "connection refused" until the port opens is expected here, not worth a log line each
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000,
                         "log_level": 0})

    def ready() -> bool:
        if proc is not None:
            proc.ensure_alive()
        return bool(admin.list_topics(timeout=1.0).brokers)

    wait_until(ready, timeout, f"Kafka at {bootstrap}")


REDIS_MISSING = (
    "redis-server is not installed. Install Debian's package: `sudo apt-get install -y "
    "redis-server` (make setup does this when run as root), or set REDIS_URL to an existing Redis."
)


def redis_binary() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if path is None:
        raise StackError(REDIS_MISSING)
    return path


def redis_server(port: int, data_dir: Path, **kwargs: object) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="redis",
        argv=[
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        **kwargs,  # type: ignore[arg-type]
    )


def wait_for_redis(url: str, timeout: float = 15.0) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        wait_until(lambda: client.ping(), timeout, f"Redis at {url}")
    finally:
        client.close()


# --- services -----------------------------------------------------------------------------------

HTTP_SERVICES = ("catalog", "orders", "social", "notifier")


def simulate_argv(rate: float) -> list[str]:
    return [sys.executable, "-m", "cli", "simulate", "--rate", str(rate)]


def wait_ready(url: str, timeout: float, what: str, proc: ManagedProcess | None = None) -> None:
    def ready() -> bool:
        if proc is not None:
            proc.ensure_alive()
        return httpx.get(url, timeout=1.0).status_code == 200

    wait_until(ready, timeout, what, interval=0.1)


def wait_worker_assigned(url: str, timeout: float, proc: ManagedProcess | None = None) -> int:
    """The worker is useful once it holds partitions: only then do events flow. Returns how
    many it holds."""
    held = 0

    def assigned() -> bool:
        nonlocal held
        if proc is not None:
            proc.ensure_alive()
        response = httpx.get(url, timeout=1.0)
        held = response.json().get("assigned_partitions", 0) if response.status_code == 200 else 0
        return held > 0

    wait_until(assigned, timeout, "the stream worker to join its consumer group", interval=0.1)
    return held


@dataclass
class StackConfig:
    workdir: Path
    broker_port: int = 9092
    redis_port: int = 6390
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    worker_web_port: int = 6066
    kafka_bootstrap_servers: str | None = None  # existing Kafka instead of the embedded one
    redis_url: str | None = None  # existing Redis instead of a local redis-server
    #: a local Redis Cluster (3 masters + 3 replicas) instead of one redis-server
    redis_cluster: bool = False
    service_token: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    echo: bool = True  # children's output and the stack's notes on the console (below)
    log_format: str = "console"
    # what to show; by default every line (the dev stack's own: warnings only, unless --verbose)
    console: Console | None = None


class Stack:
    """Starts and stops the whole system; used by ``socialproof run`` and the test fixtures."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: list[ManagedProcess] = []
        self.service_token = config.service_token or secrets.token_urlsafe(24)
        self.bootstrap = config.kafka_bootstrap_servers or f"127.0.0.1:{config.broker_port}"
        self.redis_url = config.redis_url or f"redis://127.0.0.1:{config.redis_port}/0"
        if config.redis_cluster and config.redis_url is not None:
            raise StackError(
                f"--redis-cluster starts a local Redis Cluster, but REDIS_URL={config.redis_url} "
                "names one to use: unset one of them"
            )
        self.cluster: Any = None  # tools.rediscluster.RedisCluster, when started here
        self._colors = iter(COLORS * 4)
        self.console = (config.console or Console(verbose=True)) if config.echo else None
        self.logs = config.workdir / "logs"
        self._color_of: dict[str, str] = {}

    def _echo(self, name: str, color: str, quiet: bool = False) -> dict[str, object]:
        """``ManagedProcess`` arguments for a child's output: all of it to its log file, what
        the console shows to the console."""
        self._color_of[name] = color
        return {
            "echo": self.console is not None,
            "color": color,
            "log_path": self.logs / f"{name}.log",
            "echo_to": self.console.echo_for(name, color, quiet) if self.console else None,
        }

    def note(self, name: str, text: str) -> None:
        """One line of the stack's own about a process (it is ready, where its log is)."""
        if self.console is not None:
            self.console.note(name, text, self._color_of.get(name, ""))

    def shown(self, path: Path) -> str:
        """A path as the console shows it: relative to the working directory if below it."""
        try:
            return str(path.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    # environment every child gets
    @property
    def env(self) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "SOCIALPROOF_SERVICE_TOKEN": self.service_token,
            "SOCIALPROOF_LOG_FORMAT": self.config.log_format,
            "SOCIALPROOF_WORKER_WEB_PORT": str(self.config.worker_web_port),
            **{f"SOCIALPROOF_{name.upper()}_PORT": str(p) for name, p in self.config.ports.items()},
        }
        env.update(LOCAL_ENV)
        env.update(self.config.extra_env)
        return env

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.config.ports[service]}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.config.worker_web_port}"

    def _spawn(self, name: str, argv: list[str], **kwargs: object) -> ManagedProcess:
        self.logs.mkdir(parents=True, exist_ok=True)
        proc = ManagedProcess(
            name=name,
            argv=argv,
            env=self.env,
            **self._echo(name, next(self._colors)),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        self.processes.append(proc.start())
        return proc

    def _check_port_free(self, port: int, what: str, setting: str) -> None:
        if port_in_use(port):
            raise StackError(
                f"port {port} for {what} is already in use: stop whatever listens there "
                f"(`ss -ltnp 'sport = :{port}'`) or choose another port with {setting}"
            )

    def wipe_local_data(self) -> list[Path]:
        """Delete what the local broker and redis-server keep between runs (never an existing
        cluster's data); returns the folders deleted."""
        folders = []
        if self.config.kafka_bootstrap_servers is None:
            folders.append(self.config.workdir / "kafka")
        if self.config.redis_url is None:
            folders.append(self.config.workdir / "redis")
            folders.append(self.config.workdir / "redis-cluster")
        deleted = [f for f in folders if f.exists()]
        for folder in deleted:
            shutil.rmtree(folder)
        return deleted

    def start_infrastructure(self) -> None:
        cfg = self.config
        self.logs.mkdir(parents=True, exist_ok=True)
        if cfg.kafka_bootstrap_servers is None:
            self._check_port_free(cfg.broker_port, "the embedded broker", "SOCIALPROOF_BROKER_PORT")
            # its own log (hundreds of lines a start) stays in the file, even with --verbose;
            # its warnings and errors show
            echo = self._echo("kafka", next(self._colors), quiet=True)
            echo["log_path"] = self.logs / "broker.log"
            broker = embedded_broker(cfg.broker_port, cfg.workdir / "kafka", **echo)
            self.processes.append(broker.start())
        else:
            broker = None
        if cfg.redis_cluster:
            from tools.rediscluster import RedisCluster

            self._echo("redis", next(self._colors))  # the notes' colour
            folder = cfg.workdir / "redis-cluster"
            self.cluster = RedisCluster(folder, log_dir=self.logs / "redis-cluster")
            self.cluster.start()
            self.redis_url = self.cluster.url
            self.note("redis", f"Redis Cluster of {len(self.cluster.nodes)} nodes (3 masters, "
                      f"3 replicas) ready at {self.redis_url} (data: {self.shown(folder)}, "
                      f"logs: {self.shown(self.logs / 'redis-cluster')})")
        elif cfg.redis_url is None:
            self._check_port_free(cfg.redis_port, "redis-server", "SOCIALPROOF_REDIS_PORT")
            redis = redis_server(cfg.redis_port, cfg.workdir / "redis",
                                 **self._echo("redis", next(self._colors)))
            self.processes.append(redis.start())
        wait_for_broker(self.bootstrap, proc=broker)
        if broker is not None:
            from tools.embeddedkafka import kafka_version

            self.note("kafka", f"Apache Kafka {kafka_version()} (KRaft) ready at {self.bootstrap} "
                      f"(data: {self.shown(cfg.workdir / 'kafka')}, "
                      f"log: {self.shown(self.logs / 'broker.log')})")
        else:
            self.note("kafka", f"using the broker at {self.bootstrap}")
        wait_for_redis(self.redis_url)
        if cfg.redis_cluster:
            pass  # noted above
        elif cfg.redis_url is None:
            self.note("redis", f"ready at {self.redis_url} (data: "
                      f"{self.shown(cfg.workdir / 'redis')}, log: "
                      f"{self.shown(self.logs / 'redis.log')})")
        else:
            self.note("redis", f"using {self.redis_url}")
        from socialproof.kafka import ensure_topics
        from socialproof.settings import Settings

        ensure_topics(Settings(kafka_bootstrap_servers=self.bootstrap, redis_url=self.redis_url))

    def start_services(
        self, services: tuple[str, ...] = HTTP_SERVICES, worker: bool = True
    ) -> None:
        for service in services:
            self._check_port_free(
                self.config.ports[service],
                f"the {service} service",
                f"SOCIALPROOF_{service.upper()}_PORT",
            )
        if worker:
            self._check_port_free(
                self.config.worker_web_port, "the stream worker", "SOCIALPROOF_WORKER_WEB_PORT"
            )
        procs = {s: self._spawn(s, service_argv(s)) for s in services}
        worker_proc = self._spawn("worker", worker_argv()) if worker else None
        for service, proc in procs.items():
            wait_ready(f"{self.url(service)}/readyz", 60, f"the {service} service", proc)
            self.note(service, f"ready at {self.url(service)} "
                      f"(log: {self.shown(self.logs / f'{service}.log')})")
        if worker_proc is not None:
            held = wait_worker_assigned(f"{self.worker_url}/readyz", 90, worker_proc)
            self.note("worker", f"ready at {self.worker_url}, {held} partitions assigned "
                      f"(log: {self.shown(self.logs / 'worker.log')})")

    def start_simulator(self, rate: float) -> ManagedProcess:
        """Demo traffic through the services' APIs (``socialproof simulate``); start it once the
        services answer. It never exits on errors, so ``check_alive`` watches it like the rest."""
        from tools.simulate_experiments import demo_note

        proc = self._spawn("simulate", simulate_argv(rate))
        self.note("simulate", f"started, {rate:g} events/s{demo_note({**os.environ, **self.env})} "
                  f"(log: {self.shown(self.logs / 'simulate.log')})")
        return proc

    def start_process(self, name: str, argv: list[str]) -> ManagedProcess:
        return self._spawn(name, argv)

    def check_alive(self) -> None:
        for proc in self.processes:
            proc.ensure_alive()
        if self.cluster is not None:
            for node in self.cluster.nodes:
                node.proc.ensure_alive()

    def stop(self) -> None:
        # Services first (they flush producers), infrastructure last.
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


@contextlib.contextmanager
def running_stack(config: StackConfig, services: bool = True) -> Iterator[Stack]:
    stack = Stack(config)
    try:
        stack.start_infrastructure()
        if services:
            stack.start_services()
        yield stack
    finally:
        stack.stop()
