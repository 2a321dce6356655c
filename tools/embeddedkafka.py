"""Apache Kafka on this machine: the jars from Maven Central, run as KRaft processes.

The dev stack (``make run``), the test suite and the bench run the real broker, not a stand-in:
the pinned release in ``kafka_jars/pom.xml`` is fetched once with Maven
(``dependency:copy-dependencies``) into a cache outside git (``~/.cache/socialproof/kafka/``,
or ``SOCIALPROOF_KAFKA_CACHE``) and started with ``java -cp 'libs/*' kafka.Kafka``, the entry
point of the distribution's own scripts. Once fetched, nothing is downloaded again.

- :func:`single_node` is one process in combined mode (broker + controller, a static voter),
  replication factor 1: the dev stack and the test suite. Measured on 2 cores: ready in about
  3 s (formatting a new log dir adds about 1 s).
- :class:`KafkaCluster` is three such processes on loopback, each broker and controller, with
  replication factor 3 and ``min.insync.replicas=2``: the reliability suite's fault tests.

Log dirs are the caller's (``.devstack/kafka`` for ``make run``, so topics survive a restart);
a node's log goes to a file, never to the console. ``SOCIALPROOF_KAFKA_LIBS`` points at an
existing Kafka distribution's ``libs/`` instead of the Maven cache; ``SOCIALPROOF_KAFKA_HEAP``
bounds the heap (default 512m: Kafka keeps records in the page cache, not on the heap);
``SOCIALPROOF_KAFKA_JVM_OPTS`` adds JVM options to every broker (the test suite sets
``-XX:TieredStopAtLevel=1``: see ``tests/support/backends.py``).

Class data sharing (:func:`class_sharing`): a broker on a new log dir maps the classes it loads
at start from an archive in the cache (``cds/``) instead of parsing and verifying them from the
jars again, which takes start-up from about 3.8 to 2.2 s of CPU (measured on 2 cores; the broker
runs the same afterwards). The archive is made by the first such broker that exits cleanly
without one (its JVM writes the classes it loaded, 3-5 s more at its stop), checked and moved
into place by the next start. A broker restarted on its log dir starts without it: started that
fast, Kafka 4.4's controller registration races the controller's activation on replaying its
metadata log and logs a NotControllerException at ERROR (retried, harmless, but ``make run``
shows broker errors). ``SOCIALPROOF_KAFKA_CDS=0`` turns it off.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from socialproof.processes import (
    ManagedProcess,
    ProcessError,
    free_port,
    stop_together,
    wait_until,
)
from tools.devstack import StackError

POM = Path(__file__).with_name("kafka_jars") / "pom.xml"
MIN_JAVA = 17
INSTALL_JAVA = (
    "Apache Kafka needs Java {min}+ and Maven: `sudo apt-get install -y openjdk-17-jre-headless "
    "maven` (make setup does this when run as root), or set KAFKA_BOOTSTRAP_SERVERS to an "
    "existing Kafka"
)


def kafka_version() -> str:
    """The pinned Apache Kafka release (``kafka.version`` in the pom)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    assert node is not None and node.text, f"{POM} names no kafka.version"
    return node.text.strip()


def _cache_root() -> Path:
    configured = os.environ.get("SOCIALPROOF_KAFKA_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "socialproof" / "kafka"


#: ``java -version`` of each java binary checked (its build: a sharing archive is for one JVM)
_JAVA_BUILDS: dict[str, str] = {}


def java_binary() -> str:
    """``java`` of version 17 or newer, or a StackError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise StackError(INSTALL_JAVA.format(min=MIN_JAVA))
    done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    _JAVA_BUILDS[java] = done.stderr
    found = re.search(r'version "(\d+)', done.stderr)
    if found is None or int(found.group(1)) < MIN_JAVA:
        raise StackError(
            f"{java} is {found.group(1) if found else 'of an unknown version'}: "
            + INSTALL_JAVA.format(min=MIN_JAVA)
        )
    return java


def ensure_jars(echo: bool = True) -> Path:
    """The folder of the pinned release's jars, fetched with Maven on first use.

    The copy goes to a temporary folder renamed into place when complete, so an interrupted
    fetch is never mistaken for a finished one, and two processes fetching at once both end with
    the same folder.
    """
    if os.environ.get("SOCIALPROOF_KAFKA_LIBS"):
        libs = Path(os.environ["SOCIALPROOF_KAFKA_LIBS"])
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise StackError(f"SOCIALPROOF_KAFKA_LIBS={libs} holds no kafka_2.13-*.jar")
        return libs
    version = kafka_version()
    libs = _cache_root() / version / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(INSTALL_JAVA.format(min=MIN_JAVA))
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    if echo:
        print(f"fetching Apache Kafka {version} from Maven Central (once) into {libs} ...",
              flush=True)
    argv = [
        mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise StackError(
            f"Maven could not fetch Apache Kafka {version} ({' '.join(argv)}):\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    (staging / ".complete").write_text(version + "\n")
    try:
        staging.rename(libs)
    except OSError:  # another process finished first: its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
        if not (libs / ".complete").exists():
            raise
    return libs


def class_sharing(java: str, classpath: str, dump: bool = True) -> list[str]:
    """JVM options to map classes from the class data sharing archive of this JVM and
    classpath: the archive when there is one; otherwise (``dump``) a file of its own for this
    JVM to write the classes it loaded into when it exits, which a later call checks and makes
    the archive. Nothing when ``SOCIALPROOF_KAFKA_CDS=0`` or the cache is not writable."""
    if os.environ.get("SOCIALPROOF_KAFKA_CDS", "1").strip() == "0":
        return []
    key = hashlib.sha256(
        f"{os.path.realpath(java)}\n{_JAVA_BUILDS.get(java, '')}\n{classpath}".encode()
    ).hexdigest()[:16]
    folder = _cache_root() / "cds"
    archive = folder / f"kafka-{key}.jsa"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _adopt_dumps(java, classpath, archive)
    except OSError:
        return []
    quiet = "-Xlog:cds*=off"
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", quiet]
    if not dump:
        return []
    return [f"-XX:ArchiveClassesAtExit={archive}.{uuid.uuid4().hex[:12]}.tmp", quiet]


def _adopt_dumps(java: str, classpath: str, archive: Path) -> None:
    """Archives written by JVMs that have exited: the first complete one (checked by a JVM that
    maps it and verifies its checksums) becomes ``archive`` (renamed, so a JVM starting never
    sees half of one); the rest are deleted. A JVM killed while writing leaves a partial file,
    which a JVM would crash on, hence the check."""
    dumps = sorted(archive.parent.glob(f"{archive.name}.*.tmp"))
    if not dumps:
        return
    writing = _files_named_by_live_processes(dumps)
    for dump in dumps:
        if dump in writing:
            continue
        try:
            if not archive.exists() and _usable_archive(java, classpath, dump):
                os.replace(dump, archive)
            else:
                dump.unlink()
        except OSError:  # another process adopted or deleted it first
            continue


def _files_named_by_live_processes(paths: list[Path]) -> set[Path]:
    names = {str(path).encode(): path for path in paths}
    found: set[Path] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        found.update(path for name, path in names.items() if name in cmdline)
    return found


def _usable_archive(java: str, classpath: str, path: Path) -> bool:
    with tempfile.TemporaryDirectory() as cwd:  # where a crashing check would write its report
        done = subprocess.run(
            [java, f"-XX:SharedArchiveFile={path}", "-Xshare:on", "-XX:+VerifySharedSpaces",
             "-XX:ErrorFile=/dev/null", "-cp", classpath, "-version"],
            capture_output=True, cwd=cwd, timeout=60,
        )
    return done.returncode == 0


def new_cluster_id() -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` prints it (URL-safe base64, 22 chars),
    never starting with "-" (Kafka's ``Uuid.randomUuid`` draws again then: such an id reads as an
    option on a command line)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass
class KafkaNode:
    """One KRaft process, broker and controller in one (combined mode)."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    voters: str
    replication: int = 1
    overrides: Mapping[str, str] = field(default_factory=dict)
    proc: ManagedProcess | None = None
    #: its next start is its first on a log dir formatted here: class data sharing (see above)
    share_classes: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self) -> dict[str, str]:
        rf, min_isr = str(self.replication), str(min(2, self.replication))
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            # Topics come from the contracts registry (ensure_topics), never from a typo.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            # A single group member need not wait for others to join (the default 3 s is for
            # fleets of consumers starting together).
            "group.initial.rebalance.delay.ms": "0",
            # The log cleaner's dedupe buffer defaults to 128 MiB of heap; compacted topics here
            # are small.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            **self.overrides,
        }

    def write_properties(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path

    def format(self, java: str, classpath: str, cluster_id: str) -> None:
        """Format the log dir once; a formatted one is reused (its topics survive) without
        starting StorageTool's JVM again (0.8 s of every restart, measured)."""
        props = self.write_properties()
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        self.share_classes = True
        # a one-shot tool: the C1 compiler alone starts it sooner
        done = subprocess.run(
            [java, "-Xmx256m", "-XX:TieredStopAtLevel=1",
             *class_sharing(java, classpath, dump=False),
             "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(props), "--ignore-formatted"],
            capture_output=True, text=True, timeout=120,
        )
        if done.returncode != 0:
            raise StackError(
                f"formatting Kafka's log dir {self.data_dir} failed:\n"
                + (done.stdout + done.stderr)[-3000:]
            )

    def process(self, java: str, classpath: str, **kwargs: object) -> ManagedProcess:
        heap = os.environ.get("SOCIALPROOF_KAFKA_HEAP", "512m")
        argv = [
            java, f"-Xmx{heap}", f"-Xms{min(256, _megabytes(heap))}m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            *(class_sharing(java, classpath) if self.share_classes else []),
            *shlex.split(os.environ.get("SOCIALPROOF_KAFKA_JVM_OPTS", "")),
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
            # The request log and the config dumps at start are thousands of lines a minute.
            "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn",
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
            "-cp", classpath, "kafka.Kafka", str(self.data_dir / "server.properties"),
        ]
        self.share_classes = False  # any later start is a restart on this log dir
        self.proc = ManagedProcess(name=f"kafka-{self.node_id}", argv=argv, **kwargs)  # type: ignore[arg-type]
        return self.proc


def _megabytes(heap: str) -> int:
    number, unit = int(heap[:-1]), heap[-1].lower()
    return number * 1024 if unit == "g" else number if unit == "m" else number // (1024 * 1024)


def _prepare(nodes: list[KafkaNode], echo: bool) -> tuple[str, str]:
    """Java, the classpath, and every node's log dir formatted with one cluster id, kept in a
    ``cluster-id`` file (a single node's own folder; beside a cluster's node folders) so that a
    restart reuses it."""
    java = java_binary()
    classpath = str(ensure_jars(echo=echo) / "*")
    id_file = nodes[0].data_dir.parent / "cluster-id" if len(nodes) > 1 else (
        nodes[0].data_dir / "cluster-id")
    id_file.parent.mkdir(parents=True, exist_ok=True)
    if not id_file.exists():
        id_file.write_text(new_cluster_id())
    cluster_id = id_file.read_text().strip()
    for node in nodes:
        node.format(java, classpath, cluster_id)
    return java, classpath


def single_node(
    port: int, data_dir: Path, controller_port: int | None = None, echo_fetch: bool = True,
    overrides: Mapping[str, str] | None = None, **kwargs: object,
) -> ManagedProcess:
    """One combined-mode KRaft process on ``port`` with its log dir under ``data_dir``; returns
    the (not yet started) process. ``overrides`` are broker properties set over the defaults
    (tests: e.g. a lower ``group.min.session.timeout.ms``); ``kwargs`` go to
    :class:`ManagedProcess` (log path, echo)."""
    controller_port = controller_port or free_port()
    node = KafkaNode(1, port, controller_port, data_dir, f"1@127.0.0.1:{controller_port}",
                     overrides=dict(overrides or {}))
    java, classpath = _prepare([node], echo_fetch)
    proc = node.process(java, classpath, **kwargs)
    proc.name = "kafka"
    return proc


class KafkaCluster:
    """Three KRaft processes on loopback (each broker and controller), replication factor 3,
    ``min.insync.replicas=2``: one broker may die and every acknowledged record survives.

    Built for fault tests: every node keeps its ports and log dir for the cluster's life, so a
    node killed (:meth:`kill`) or frozen (:meth:`freeze`) comes back with :meth:`start_node` or
    :meth:`thaw` as the same broker, with the data it had. Start nodes from a long-lived thread
    (see ``processes.die_with_parent``). Measured on 2 cores: formatting the three log dirs takes
    3-5 s, and every broker sees the other two about 11 s after :meth:`start`.
    """

    def __init__(self, data_dir: Path, size: int = 3, log_dir: Path | None = None) -> None:
        ports = [(free_port(), free_port()) for _ in range(size)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        self.log_dir = log_dir or data_dir
        self.nodes = [
            KafkaNode(i + 1, p, c, data_dir / f"node-{i + 1}", voters, replication=min(3, size))
            for i, (p, c) in enumerate(ports)
        ]
        self._java, self._classpath = _prepare(self.nodes, echo=False)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def running(self, node_id: int) -> bool:
        proc = self.node(node_id).proc
        return proc is not None and proc.running

    def start_node(self, node_id: int) -> ManagedProcess:
        """Start (or start again, after :meth:`kill`) one node on its ports and log dir."""
        if self.running(node_id):
            raise StackError(f"kafka-{node_id} is already running")
        node = self.node(node_id)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = node.process(
            self._java, self._classpath, echo=False,
            log_path=self.log_dir / f"kafka-{node_id}.log",
        )
        return proc.start()

    def start(self) -> KafkaCluster:
        for node in self.nodes:
            self.start_node(node.node_id)
        return self

    def wait_ready(self, timeout: float = 90.0, node_ids: Iterable[int] | None = None) -> None:
        """Until every node in ``node_ids`` (default: all) answers a metadata request naming
        every one of them as a live broker; fails fast if one of them exits."""
        from confluent_kafka.admin import AdminClient

        ids = sorted(node_ids or (n.node_id for n in self.nodes))
        admins = {
            i: AdminClient({"bootstrap.servers": self.node(i).bootstrap,
                            "socket.timeout.ms": 2000, "log_level": 0})
            for i in ids
        }

        def ready() -> bool:
            for i in ids:
                proc = self.node(i).proc
                if proc is None:
                    raise StackError(f"kafka-{i} was never started")
                proc.ensure_alive()
            return all(set(ids) <= set(admins[i].list_topics(timeout=1.0).brokers) for i in ids)

        wait_until(ready, timeout, f"Kafka brokers {ids} to see each other", interval=0.2)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; :meth:`start_node` brings it back."""
        proc = self.node(node_id).proc
        assert proc is not None, f"kafka-{node_id} was never started"
        proc.kill()

    def freeze(self, node_id: int) -> None:
        """SIGSTOP one node: its connections stay open and hang, as with a stalled machine or a
        network partition; :meth:`thaw` resumes it."""
        proc = self.node(node_id).proc
        assert proc is not None and proc.running, f"kafka-{node_id} is not running"
        proc.signal(signal.SIGSTOP)

    def thaw(self, node_id: int) -> None:
        proc = self.node(node_id).proc
        assert proc is not None, f"kafka-{node_id} was never started"
        proc.signal(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node at once, then SIGKILL whatever is left after ``timeout``. (One by
        one, the last node waits for a controller quorum that is gone: 39 s, ended by SIGKILL
        after 30; all at once, about 6 s.)"""
        procs = [n.proc for n in self.nodes if n.proc is not None]
        stop_together(procs, timeout)

    def discard(self) -> None:
        """SIGKILL every node: for a throwaway cluster whose logs nobody reads again (a fault
        test's), the ~6 s of a clean shutdown buy nothing."""
        for node in self.nodes:
            if node.proc is not None and node.proc.running:
                node.proc.signal(signal.SIGCONT)
                node.proc.kill()


if __name__ == "__main__":  # `make setup`: fetch the jars now, so the first start is quick
    try:
        print(f"Apache Kafka {kafka_version()}: {ensure_jars()}")
    except ProcessError as exc:
        raise SystemExit(f"error: {exc}") from None
