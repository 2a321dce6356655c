"""``socialproof run`` (what ``make run`` starts): the whole stack comes up within 60 s, prints its
URLs, serves the thin path, and Ctrl-C stops every process it started; a second run finds the
topics, views and counters of the first (the broker's log dirs and Redis' append-only file are
kept), and ``--fresh`` starts empty.

Its console is readable: with the traffic simulator on, its first 30 s are under 60 lines, the
banner included (each process once ready, warnings, a summary of activity), while the log files
under the dev stack's folder keep every line, the per-event ones included. The first run of the
test above is that run (one stack started for both: a stack start is most of their time)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from socialproof.processes import free_port
from socialproof.settings import DEFAULT_PORTS
from tests.support.waiting import wait_for


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), however deep."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SOCIALPROOF_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update({
        "SOCIALPROOF_BROKER_PORT": str(free_port()),
        "SOCIALPROOF_REDIS_PORT": str(free_port()),
        "SOCIALPROOF_WORKER_WEB_PORT": str(free_port()),
        "SOCIALPROOF_DEVSTACK_DIR": str(tmp_path / "devstack"),
        "SOCIALPROOF_SIMULATE_RATE": "0",
        "COLUMNS": "200",
    })
    for name in DEFAULT_PORTS:
        env[f"SOCIALPROOF_{name.upper()}_PORT"] = str(free_port())
    return env


@contextmanager
def running(dev_env: dict[str, str], output: Path, *args: str) -> Iterator[subprocess.Popen]:
    """``socialproof run`` as ``make run`` starts it, once its banner is printed; killed on the
    way out if the test did not stop it."""
    with output.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "run", *args],
                                env=dev_env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "is up in" in output.read_text() or proc.poll() is not None, 60,
                 "the 'is up' banner")
        assert proc.poll() is None, output.read_text()[-3000:]
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ctrl_c(proc: subprocess.Popen, output: Path) -> None:
    """Ctrl-C, then nothing the stack started is left running."""
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(45) == 0, output.read_text()[-3000:]
    wait_for(lambda: not any(alive(pid) for pid in children), 10, "every child to exit")
    assert "no process left behind" in output.read_text()


SUMMARY = re.compile(r"^\d\d:\d\d:\d\d  (?:events/s (?P<rate>[\d.]+): |idle ).*"
                     r"\| lag [\d.]+ s \| live (?P<live>\d+)$")


def open_sse(port: int, product: str) -> socket.socket:
    """A live connection to the notifier (SSE), left open until closed."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(f"GET /v1/proof/stream?products={product} HTTP/1.1\r\n"
                 "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    return conn


def command_lines(pids: set[int]) -> list[str]:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return lines


def test_run_starts_everything_within_60s_with_a_readable_console_and_ctrl_c_leaves_no_process(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "run.out"
    started = time.monotonic()
    # Given the stack started with the quickstart command, with the simulator at its default rate
    # (as `make run` starts it)
    with running({**dev_env, "SOCIALPROOF_SIMULATE_RATE": "5"}, output) as proc:
        assert time.monotonic() - started < 60
        # and someone watching a product live
        sse = open_sse(int(dev_env["SOCIALPROOF_NOTIFIER_PORT"]), "p1")
        try:
            text = output.read_text()
            notifier = f"http://127.0.0.1:{dev_env['SOCIALPROOF_NOTIFIER_PORT']}"
            orders = f"http://127.0.0.1:{dev_env['SOCIALPROOF_ORDERS_PORT']}"
            catalog = f"http://127.0.0.1:{dev_env['SOCIALPROOF_CATALOG_PORT']}"
            assert f"{notifier}/v1/proof/products/" in text
            assert f"{orders}/docs" in text
            assert "Apache Kafka" in text and "(KRaft) ready at" in text
            token = re.search(r"Bearer ([A-Za-z0-9_\-]+)", text).group(1)
            auth = {"Authorization": f"Bearer {token}"}
            # (orders only accept catalogued products: the catalog creates one)
            created = httpx.post(f"{catalog}/v1/products", headers=auth,
                                 json={"id": "devstack-p1", "name": "Dev mug", "price": "1.00",
                                       "currency": "EUR"}, timeout=10)
            assert created.status_code == 201, created.text
            # When an order is posted with the printed token
            order = {"user_id": "u1", "currency": "EUR",
                     "lines": [{"product_id": "devstack-p1", "quantity": 1,
                                "unit_price": "1.00"}]}
            keyed = {**auth, "Idempotency-Key": "devstack-order-1"}
            response = httpx.post(f"{orders}/v1/orders", headers=keyed, json=order, timeout=10)
            assert response.status_code == 201, response.text
            # Then the proof shows it
            wait_for(lambda: httpx.get(f"{notifier}/v1/proof/products/devstack-p1", timeout=5)
                     .json()["bought"]["24h"] == 1, 2, "the order in the proof")
            children = descendants(proc.pid)
            assert len(children) >= 7, "broker, redis, 4 services and the worker"
            # and the broker is Apache Kafka itself
            assert any("kafka.Kafka" in line and "java" in line
                       for line in command_lines(children))
            # When 30 s have passed since it started
            while time.monotonic() - started < 30:
                assert proc.poll() is None, output.read_text()[-3000:]
                time.sleep(0.2)
            first_30_s = output.read_text()
        finally:
            sse.close()
        # When Ctrl-C
        ctrl_c(proc, output)

    # Then its first 30 s printed under 60 lines: the banner with the demo storefront's URL
    # among them
    lines = first_30_s.splitlines()
    assert len(lines) < 60, first_30_s
    assert f"{notifier}/demo" in first_30_s
    # each process once it is ready, with its log file
    for name in ("catalog", "orders", "social", "notifier"):
        port = dev_env[f"SOCIALPROOF_{name.upper()}_PORT"]
        assert re.search(rf"^{name} +ready at http://127\.0\.0\.1:{port} \(log: .*{name}\.log\)$",
                         first_30_s, re.M), first_30_s
    assert "(KRaft) ready at" in first_30_s
    assert re.search(r"^worker +ready at .* partitions assigned", first_30_s, re.M)
    # and, after the banner, a summary of the events flowing and of the live connection
    banner = next(i for i, line in enumerate(lines) if "is up in" in line)
    summaries = [m for line in lines[banner:] if (m := SUMMARY.match(line))]
    assert any(m["rate"] and float(m["rate"]) > 0 for m in summaries), first_30_s
    assert any(int(m["live"]) >= 1 for m in summaries), first_30_s
    # but no line per event
    assert "order accepted" not in first_30_s and "uvicorn" not in first_30_s

    # And the log files keep every line, each event's included
    logs = Path(dev_env["SOCIALPROOF_DEVSTACK_DIR"]) / "logs"
    assert re.search(r" INFO +socialproof\.orders: order accepted ",
                     (logs / "orders.log").read_text())
    assert " INFO    uvicorn.error: Started server process" in (logs / "catalog.log").read_text()
    assert "simulator starting" in (logs / "simulate.log").read_text()
    assert "Starting" in (logs / "worker.log").read_text()
    assert (logs / "broker.log").stat().st_size > 0 and (logs / "redis.log").exists()

    # When the stack is started again
    with running(dev_env, tmp_path / "run2.out") as proc:
        # Then the product, the order (its Idempotency-Key answers with the same order) and the
        # counter are still there: topics, views and counters survived the restart
        product = httpx.get(f"{catalog}/v1/products/devstack-p1", timeout=10)
        assert product.status_code == 200, product.text
        again = httpx.post(f"{orders}/v1/orders", headers=keyed, json=order, timeout=10)
        assert again.status_code in (200, 201), again.text
        assert again.json()["order_id"] == response.json()["order_id"]
        proof = httpx.get(f"{notifier}/v1/proof/products/devstack-p1", timeout=5).json()
        assert proof["bought"]["24h"] == 1
        ctrl_c(proc, tmp_path / "run2.out")

    # When it is started with --fresh
    with running(dev_env, tmp_path / "run3.out", "--fresh") as proc:
        # Then it starts empty
        assert httpx.get(f"{catalog}/v1/products/devstack-p1", timeout=10).status_code == 404
        proof = httpx.get(f"{notifier}/v1/proof/products/devstack-p1", timeout=5).json()
        assert proof["bought"]["24h"] == 0
        ctrl_c(proc, tmp_path / "run3.out")


def test_run_explains_a_busy_port(dev_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(dev_env["SOCIALPROOF_BROKER_PORT"])))
        busy.listen()
        result = subprocess.run([sys.executable, "-m", "cli", "run"], env=dev_env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    message = " ".join((result.stdout + result.stderr).split())
    assert f"port {dev_env['SOCIALPROOF_BROKER_PORT']} for the embedded broker is already in use" in message
    assert "SOCIALPROOF_BROKER_PORT" in message


def test_run_refuses_a_local_cluster_beside_a_redis_url(dev_env: dict[str, str]) -> None:
    """``--redis-cluster`` starts a cluster of its own; with REDIS_URL also naming one, which to
    use is ambiguous: it says so before starting anything."""
    env = {**dev_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run([sys.executable, "-m", "cli", "run", "--redis-cluster"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    message = " ".join((result.stdout + result.stderr).split())
    assert "--redis-cluster starts a local Redis Cluster, but REDIS_URL=redis://127.0.0.1:1/0" in message
    assert not Path(dev_env["SOCIALPROOF_DEVSTACK_DIR"]).exists()
