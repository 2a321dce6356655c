"""The formation Job of components/redis-cluster, run for real: its shell script, as rendered by
kustomize, against six redis-servers started from the component's own redis.conf (only the
port, the directories and the announced address changed for loopback). It forms 3 masters with
a replica each; run again on the formed cluster it does nothing and succeeds; on a half-formed
one it refuses and names the repair.

Measured on this machine (redis-server 7.0.15, 2 shared cores): the file's three tests take
3.6-5.8 s (5 runs), most of it redis-cli waiting for the six nodes to agree on the formation.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.deploy.objects import Objs, find
from tools.deploycheck import manifests

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-cli")),
    reason="needs redis-server and redis-cli (Debian: apt-get install -y redis-server)",
)

NODE_COUNT = 6
#: the nodes' cluster state, agreed by all of them, within this (cluster-node-timeout is 5 s)
AGREE_S = 30.0


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """Ports whose bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 45_000)
        if port not in ports and _free(port) and _free(port + 10_000):
            ports.append(port)
    return ports


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout_s} s")


def job_script(objects: Objs) -> tuple[str, dict[str, str]]:
    container = manifests.pod_spec(find(objects, "Job", "redis-cluster-create"))["containers"][0]
    assert container["command"][:2] == ["sh", "-c"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return container["command"][2], env


@pytest.fixture
def nodes(cluster: Objs, tmp_path: Path) -> Iterator[list[int]]:
    """Six fresh nodes from the component's redis.conf on loopback; their ports."""
    conf = next(
        o["data"]["redis.conf"]
        for o in cluster
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("redis-cluster-config")
    )
    ports = cluster_ports(NODE_COUNT)
    procs: list[subprocess.Popen] = []
    try:
        for port in ports:
            data = tmp_path / str(port)
            data.mkdir()
            # the pod's paths, moved under this node's directory (Redis reads `dir` as it parses)
            (data / "redis.conf").write_text(conf.replace("/data", str(data)))
            argv = ["redis-server", str(data / "redis.conf"), "--port", str(port)]
            argv += ["--bind", "127.0.0.1", "--loglevel", "warning"]
            argv += [
                "--cluster-announce-ip",
                "127.0.0.1",
                "--cluster-announce-hostname",
                "localhost",
            ]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        for port, proc in zip(ports, procs, strict=True):
            client = redis.Redis(port=port, socket_timeout=1)
            wait_for(
                lambda c=client, p=proc: p.poll() is not None or _pong(c), 10, f"redis on {port}"
            )
            client.close()
            assert proc.poll() is None, f"redis-server on {port} exited: {proc.returncode}"
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _pong(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def run_job(cluster: Objs, ports: list[int]) -> subprocess.CompletedProcess:
    script, env = job_script(cluster)
    env.update(NODES=" ".join(f"127.0.0.1:{p}" for p in ports), WAIT_S="20")
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )


def cluster_info(port: int) -> dict:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        return client.cluster("info")
    finally:
        client.close()


def restart_rewrite(objects: Objs, nodes_conf: Path, pod_ip: str) -> str:
    """The node's start script's nodes.conf line, run on a copy of ``nodes_conf``."""
    start = manifests.pod_spec(find(objects, "StatefulSet", "redis-cluster"))["containers"][0]
    (sed,) = [
        line.strip()
        for line in start["command"][-1].splitlines()
        if "nodes.conf" in line and line.strip().startswith("sed ")
    ]
    copy = nodes_conf.with_name("nodes.copy.conf")
    copy.write_text(nodes_conf.read_text())
    subprocess.run(
        ["sh", "-c", sed.replace("/data/nodes.conf", str(copy))],
        env={"POD_IP": pod_ip, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=10,
    )
    return copy.read_text()


def role(port: int) -> str:
    client = redis.Redis(port=port, decode_responses=True)
    try:
        return client.info("replication")["role"]
    finally:
        client.close()


def agreed(info: dict) -> dict | None:
    """The node's CLUSTER INFO once it serves every slot and knows all the nodes (gossip may
    bring the last node a moment after the state turns ok)."""
    whole = info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == 16384
    return info if whole and int(info["cluster_known_nodes"]) == NODE_COUNT else None


def test_the_job_forms_three_masters_with_a_replica_each(
    cluster: Objs, nodes: list[int], tmp_path: Path
) -> None:
    # Given six fresh nodes from the component's redis.conf
    # When the formation Job's script runs
    result = run_job(cluster, nodes)
    # Then it succeeds and every node agrees: all slots served, 3 masters, 6 nodes
    assert result.returncode == 0, result.stdout + result.stderr
    for port in nodes:
        info = wait_for(lambda p=port: agreed(cluster_info(p)), AGREE_S, f"node {port} agreeing")
        assert int(info["cluster_size"]) == 3
    assert sorted(role(port) for port in nodes) == ["master"] * 3 + ["slave"] * 3

    # When a node's pod would restart with a new IP: its start script's rewrite of nodes.conf
    # (the real file this node wrote) moves only its own line to the new address
    written = tmp_path / str(nodes[0]) / "nodes.conf"
    moved = restart_rewrite(cluster, written, "10.1.2.3")
    own = [line for line in moved.splitlines() if " myself," in line]
    assert len(own) == 1 and " 10.1.2.3:" in own[0]
    assert sum("127.0.0.1:" in line for line in moved.splitlines()) == NODE_COUNT - 1

    # When it runs again on the formed cluster
    again = run_job(cluster, nodes)
    # Then it does nothing and succeeds
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already formed, nothing to do" in again.stdout
    assert "forming" not in again.stdout


def test_the_job_refuses_a_half_formed_cluster(cluster: Objs, nodes: list[int]) -> None:
    # Given two of the six nodes that already met each other, and no slots assigned
    client = redis.Redis(port=nodes[0])
    client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[1])
    client.close()
    wait_for(
        lambda: int(cluster_info(nodes[1])["cluster_known_nodes"]) == 2, AGREE_S, "the meeting"
    )
    # When the formation Job's script runs
    result = run_job(cluster, nodes)
    # Then it fails without creating anything, naming the repair
    assert result.returncode == 2, result.stdout + result.stderr
    assert "half-formed cluster" in result.stderr
    assert "redis-cli --cluster check / fix" in result.stderr
    assert int(cluster_info(nodes[0])["cluster_slots_assigned"]) == 0


def test_the_job_names_a_node_that_never_answers(cluster: Objs, nodes: list[int]) -> None:
    # Given a node list with one address where nothing listens
    dead = cluster_ports(1)[0]
    script, env = job_script(cluster)
    env.update(NODES=f"127.0.0.1:{nodes[0]} 127.0.0.1:{dead}", WAIT_S="1")
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    # When the script runs
    result = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    # Then it gives up after WAIT_S, naming that node and where to look
    assert result.returncode == 1
    assert f"127.0.0.1:{dead} does not answer PING after 1 s" in result.stderr
    assert "kubectl get pods" in result.stderr
