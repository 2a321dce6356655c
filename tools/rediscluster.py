"""A real Redis Cluster on loopback: 3 masters and 3 replicas of the system's ``redis-server``.

Issue #16 moves the serving store onto Redis Cluster. Its tests and a hand-run dev cluster need
the real thing, not a single node pretending: slots, MOVED redirects, CROSSSLOT refusals and a
replica's promotion after its master dies only happen on a cluster. This module starts one with
the same ``redis-server`` the dev stack runs (Debian's 7.0.15 here), every node a
:class:`~socialproof.processes.ManagedProcess` on free loopback ports:

- each node has its own folder (``node-<port>``) holding its append-only file and its
  ``cluster-config-file`` (``nodes.conf``), and an explicit cluster bus port (``cluster-port``,
  not the default port + 10000, which may be taken or past 65535);
- the cluster is formed by ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``;
- :meth:`RedisCluster.start` returns once every node says ``cluster_state:ok`` with all 16384
  slots served, all agree on who serves and replicates what, and every replica's link to its
  master is up (so ``WAIT 1`` is meaningful: ``repl-diskless-sync-delay 0`` starts the first
  sync at once instead of after Redis's default 5 s);
- ``cluster-node-timeout`` (default 2000 ms, a setting) is how long a silent master is given
  before its replica takes over: Redis's default of 15 s would make a failover test slow.

Measured on this machine (2 shared cores, load 0.7-1.5, 5 runs): :meth:`RedisCluster.start` on
a new folder takes 2.2-4.0 s, most of it the 2 s a master waits after its own start before it
declares the cluster ``ok``; started again on a formed folder, 2.2 s. A SIGKILLed master's
replica serves its slots, and every node is ``ok`` again, 3.6-4.9 s after the kill (2000 ms node
timeout); :meth:`RedisCluster.stop` takes 0.1-0.15 s.

Started again on a folder it formed (``python -m tools.rediscluster --dir ...`` after Ctrl-C),
the nodes reuse their ports (kept in ``ports``) and ``nodes.conf``, so the cluster and its data
come back as they were; a folder with anything else in it is rejected, not overwritten.

``make run-cluster`` (``socialproof run --redis-cluster``) runs the dev stack on one of these
under ``.devstack/redis-cluster``; ``REDIS_URL=<its URL> make run`` uses one started by hand::

    python -m tools.rediscluster --dir .devstack/redis-cluster
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from socialproof.processes import (
    ManagedProcess,
    ProcessError,
    free_port,
    stop_together,
    wait_until,
)
from tools.devstack import StackError, redis_binary

SLOTS = 16384
REDIS_CLI_MISSING = (
    "redis-cli was not found: `sudo apt-get install -y redis-tools` (Debian's redis-server "
    "package brings it)"
)


@dataclass
class RedisNode:
    """One cluster node: its client port, its cluster bus port and its own folder."""

    port: int
    bus_port: int
    data_dir: Path
    proc: ManagedProcess | None = None
    #: the node's cluster id (``CLUSTER MYID``), known once the cluster is formed
    node_id: str = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def client(self) -> redis.Redis:
        """A plain (not cluster-aware) client of this node alone, with short timeouts."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            decode_responses=True,
        )

    def answers(self) -> bool:
        """Whether the node answers a PING (within the client's 1 s)."""
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def command(self, *args: str) -> str:
        """One command to this node alone, its reply as text (``CLUSTER INFO``, ``CLUSTER
        NODES`` ...: parsed here, never by the client's callbacks)."""
        with self.client() as client:
            return str(client.execute_command(*args))

    def cluster_info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict of text."""
        lines = self.command("CLUSTER", "INFO").splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def replication(self) -> dict[str, object]:
        """``INFO replication`` as redis-py parses it (``role``, ``master_link_status`` ...)."""
        with self.client() as client:
            return client.info("replication")


@dataclass
class ClusterView:
    """What one node says of the cluster: every node's role and the slots each master serves."""

    masters: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # id -> slot ranges
    replica_of: dict[str, str] = field(default_factory=dict)  # replica id -> master id
    failed: set[str] = field(default_factory=set)

    @staticmethod
    def parse(cluster_nodes: str) -> ClusterView:
        view = ClusterView()
        for line in cluster_nodes.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            node_id, flags, master_id = fields[0], fields[2].split(","), fields[3]
            if "fail" in flags or "fail?" in flags:
                view.failed.add(node_id)
            if "master" in flags:
                ranges = []
                for part in fields[8:]:
                    if part.startswith("["):  # a slot being migrated, not served
                        continue
                    first, _, last = part.partition("-")
                    ranges.append((int(first), int(last or first)))
                view.masters[node_id] = ranges
            elif "slave" in flags and master_id != "-":
                view.replica_of[node_id] = master_id
        return view

    def slot_map(self) -> frozenset[tuple[str, tuple[tuple[int, int], ...]]]:
        """Who serves which slots, comparable between the views of two nodes."""
        return frozenset((i, tuple(sorted(r))) for i, r in self.masters.items() if r)

    def owner_of(self, slot: int) -> str | None:
        for node_id, ranges in self.masters.items():
            if any(first <= slot <= last for first, last in ranges):
                return node_id
        return None


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on 127.0.0.1, in ``data_dir``.

    Start nodes from a long-lived thread (see ``processes.die_with_parent``). Usable as a
    context manager (``with RedisCluster(path) as cluster: ...`` starts and stops it).
    """

    def __init__(
        self,
        data_dir: Path,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        log_dir: Path | None = None,
        echo: bool = False,
    ) -> None:
        if masters < 3:
            raise StackError(f"a Redis Cluster needs at least 3 masters, not {masters}")
        self.data_dir = data_dir
        self.log_dir = log_dir or data_dir
        self.node_timeout_ms = node_timeout_ms
        self.replicas = replicas
        self.echo = echo
        self._size = masters * (1 + replicas)
        self._formed = self._reusable_ports()
        ports = self._formed or [(free_port(), free_port()) for _ in range(self._size)]
        self.nodes = [RedisNode(p, b, data_dir / f"node-{p}") for p, b in ports]
        #: slot ranges of each node killed while a master (``wait_promoted`` waits for them)
        self._slots_of_killed: dict[int, list[tuple[int, int]]] = {}
        #: ports of the nodes killed or stopped here (not expected to answer)
        self._down: set[int] = set()

    # --- the folder -------------------------------------------------------------------------

    def _reusable_ports(self) -> list[tuple[int, int]]:
        """The ports of a cluster formed earlier in ``data_dir`` (every node's ``nodes.conf``
        present), or none for an empty folder; anything else is an error naming the folder."""
        ports_file = self.data_dir / "ports"
        if not self.data_dir.exists() or not any(self.data_dir.iterdir()):
            return []
        if ports_file.exists():
            pairs = [
                tuple(map(int, line.split()))
                for line in ports_file.read_text().split("\n")
                if line.strip()
            ]
            if len(pairs) == self._size and all(
                (self.data_dir / f"node-{p}" / "nodes.conf").exists() for p, _ in pairs
            ):
                return [(p, b) for p, b in pairs]
        raise StackError(
            f"{self.data_dir} holds something other than a Redis Cluster of {self._size} nodes "
            "formed here: delete it (or choose another --dir) to form a new one"
        )

    # --- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://`` of the first node: a cluster client discovers the others from it."""
        return self.nodes[0].url

    def _process(self, node: RedisNode) -> ManagedProcess:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(),
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--dir", str(node.data_dir),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(node.bus_port),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # a replica's first sync starts at once, not after the default 5 s spent waiting
            # for more replicas to share one transfer
            "--repl-diskless-sync-delay", "0",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        return ManagedProcess(
            name=f"redis-{node.port}",
            argv=argv,
            echo=self.echo,
            log_path=self.log_dir / f"redis-{node.port}.log",
        )

    def _start_node(self, node: RedisNode, timeout: float) -> None:
        node.proc = self._process(node).start()
        self._down.discard(node.port)

        def answers() -> bool:
            assert node.proc is not None
            node.proc.ensure_alive()
            with node.client() as client:
                return bool(client.ping())

        wait_until(answers, timeout, f"redis-server on port {node.port}")

    def start(self, timeout: float = 60.0) -> RedisCluster:
        """Start every node, form the cluster if this folder has none yet, and wait (at most
        ``timeout`` seconds) until every node serves all 16384 slots and every replica is in
        sync with its master."""
        deadline = time.monotonic() + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for node in self.nodes:
                self._start_node(node, max(1.0, deadline - time.monotonic()))
            if not self._formed:
                self._create(max(1.0, deadline - time.monotonic()))
                (self.data_dir / "ports").write_text(
                    "".join(f"{n.port} {n.bus_port}\n" for n in self.nodes)
                )
                self._formed = [(n.port, n.bus_port) for n in self.nodes]
            for node in self.nodes:
                node.node_id = node.command("CLUSTER", "MYID")
            self.wait_healthy(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, timeout: float) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StackError(REDIS_CLI_MISSING)
        argv = [
            cli, "--cluster", "create", *(n.address for n in self.nodes),
            "--cluster-replicas", str(self.replicas), "--cluster-yes",
        ]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(f"`{' '.join(argv)}` did not finish in {timeout:.0f}s") from exc
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise ProcessError(
                f"`{' '.join(argv)}` failed (exit {done.returncode}):\n"
                + (done.stdout + done.stderr)[-3000:]
            )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` with 16384 slots ok, every
        running replica's link to its master is up, and they all agree on who serves what."""

        def healthy() -> bool:
            running = [n for n in self.nodes if n.running]
            for node in self.nodes:
                if node.proc is not None and node.port not in self._down:
                    node.proc.ensure_alive()  # died on its own, not killed here: say so now
            views = []
            for node in running:
                info = node.cluster_info()
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                replication = node.replication()
                if replication.get("role") == "slave" and (
                    replication.get("master_link_status") != "up"
                ):
                    return False
                views.append(ClusterView.parse(node.command("CLUSTER", "NODES")))
            running_ids = {n.node_id for n in running if n.node_id}
            if any(view.failed & running_ids for view in views):
                return False  # a node back from a restart not yet seen as alive by everyone
            # every node agrees on who serves which slots and who replicates whom (a replica
            # is gossiped as a master without slots for a moment after it was told to replicate)
            agreed = {(view.slot_map(), frozenset(view.replica_of.items())) for view in views}
            return len(agreed) == 1

        wait_until(healthy, timeout, "the Redis Cluster to be ok on every node", interval=0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node at once (each writes its append-only file and ``nodes.conf``),
        then SIGKILL whatever is left after ``timeout``."""
        procs = [n.proc for n in self.nodes if n.proc is not None]
        self._down.update(n.port for n in self.nodes)
        stop_together(procs, timeout)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # --- topology ---------------------------------------------------------------------------

    def _view(self) -> ClusterView:
        """The cluster as the first node that answers sees it (a running node may be frozen:
        a test's SIGSTOP)."""
        for node in self.nodes:
            if node.running:
                try:
                    return ClusterView.parse(node.command("CLUSTER", "NODES"))
                except redis.RedisError:
                    continue
        raise StackError("no node of the Redis Cluster answers")

    def _node(self, node_id: str) -> RedisNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise StackError(f"no node of this Redis Cluster has the id {node_id}")

    def masters(self) -> list[RedisNode]:
        """The nodes serving slots now, as a running node sees them (in port order)."""
        view = self._view()
        return [
            n for n in self.nodes if view.masters.get(n.node_id) and n.node_id not in view.failed
        ]

    def replicas_of(self, master: RedisNode) -> list[RedisNode]:
        view = self._view()
        return [n for n in self.nodes if view.replica_of.get(n.node_id) == master.node_id]

    def master_for(self, key: str) -> RedisNode:
        """The node serving ``key``'s slot (``CLUSTER KEYSLOT``) now."""
        node = next(n for n in self.nodes if n.running)
        slot = int(node.command("CLUSTER", "KEYSLOT", key))
        owner = self._view().owner_of(slot)
        if owner is None:
            raise StackError(f"no node serves slot {slot} (key {key!r}) now")
        return self._node(owner)

    # --- faults -----------------------------------------------------------------------------

    def kill(self, node: RedisNode) -> None:
        """SIGKILL one node, as a crash would; :meth:`restart` brings it back."""
        assert node.proc is not None and node.running, f"redis-{node.port} is not running"
        slots = self._view().masters.get(node.node_id, [])
        self._down.add(node.port)
        node.proc.kill()
        self._slots_of_killed[node.port] = slots

    def wait_promoted(self, old_master: RedisNode, timeout: float = 30.0) -> RedisNode:
        """Until another node serves the slots ``old_master`` served when it was killed and the
        cluster is ok on every running node; returns the node serving them now."""
        slots = self._slots_of_killed.get(old_master.port)
        if not slots:
            raise StackError(f"redis-{old_master.port} was not a master when it was killed")
        first_slot = slots[0][0]

        def promoted() -> bool:
            owner = self._view().owner_of(first_slot)
            return owner not in (None, old_master.node_id)

        wait_until(
            promoted, timeout, f"a replica of redis-{old_master.port} to take over", interval=0.1
        )
        self.wait_healthy(timeout)
        owner = self._view().owner_of(first_slot)
        assert owner is not None
        return self._node(owner)

    def restart(self, node: RedisNode, timeout: float = 30.0) -> None:
        """Start a killed or stopped node again on its ports and folder (its ``nodes.conf``
        makes it the same node: a former master comes back as a replica of its successor) and
        wait until the cluster is ok on every node again."""
        if node.running:
            raise StackError(f"redis-{node.port} is already running")
        self._start_node(node, timeout)
        self._slots_of_killed.pop(node.port, None)
        self.wait_healthy(timeout)


    def heal(self, timeout: float = 30.0) -> None:
        """Restart every node killed or stopped here and wait until the cluster is ok on every
        node (a former master comes back as its successor's replica): the full cluster again,
        whatever a test left. Cheap when nothing is down (one health check)."""
        for node in self.nodes:
            if node.running and not node.answers():
                assert node.proc is not None
                node.proc.kill()  # alive but silent (frozen, or dying): start it afresh
            if not node.running:
                self._start_node(node, timeout)
                self._slots_of_killed.pop(node.port, None)
                self._down.discard(node.port)
        self.wait_healthy(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rediscluster",
        description="Run a Redis Cluster (3 masters, 3 replicas) on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".devstack/redis-cluster"),
        help="the nodes' folders (kept: a restart reuses the cluster)",
    )
    parser.add_argument(
        "--node-timeout-ms",
        type=int,
        default=2000,
        help="cluster-node-timeout: how long before a silent master fails over",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        cluster = RedisCluster(args.dir, node_timeout_ms=args.node_timeout_ms)
        cluster.start()
    except (StackError, ProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # during the start: start() stopped what it had started
        return 130
    # Ctrl-C or SIGTERM (from a supervisor) is waited for, not handled: either stops the nodes
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        print(
            f"Redis Cluster up in {time.monotonic() - started:.1f}s "
            f"({len(cluster.nodes)} nodes, data and logs in {args.dir}); Ctrl-C stops it",
            flush=True,
        )
        print(f"REDIS_URL={cluster.url}", flush=True)
        while signal.sigtimedwait(stop_signals, 1.0) is None:
            for node in cluster.nodes:
                assert node.proc is not None
                node.proc.ensure_alive()  # a node that died: say so and stop the rest
        return 0
    except ProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
