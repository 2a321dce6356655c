"""``socialproof run``'s console is readable: with the traffic simulator on, its first 30 s are
under 60 lines, the banner included (each process once ready, warnings, a summary of activity),
while the log files under the dev stack's folder keep every line, the per-event ones included."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from tests.integration.test_devstack import ctrl_c, dev_env, running  # noqa: F401 (a fixture)

SUMMARY = re.compile(r"^\d\d:\d\d:\d\d  (?:events/s (?P<rate>[\d.]+): |idle ).*"
                     r"\| lag [\d.]+ s \| live (?P<live>\d+)$")


def open_sse(port: int, product: str) -> socket.socket:
    """A live connection to the notifier (SSE), left open until closed."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(f"GET /v1/proof/stream?products={product} HTTP/1.1\r\n"
                 "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    return conn


def test_the_first_30_s_of_make_run_are_under_60_lines_and_the_logs_keep_everything(
    dev_env: dict[str, str], tmp_path: Path  # noqa: F811
) -> None:
    # Given the stack started as `make run` starts it, with the simulator at its default rate
    dev_env = {**dev_env, "SOCIALPROOF_SIMULATE_RATE": "5"}
    output = tmp_path / "run.out"
    started = time.monotonic()
    with running(dev_env, output) as proc:
        # and someone watching a product live
        sse = open_sse(int(dev_env["SOCIALPROOF_NOTIFIER_PORT"]), "p1")
        try:
            # When 30 s have passed since it started
            while time.monotonic() - started < 30:
                assert proc.poll() is None, output.read_text()[-3000:]
                time.sleep(0.2)
            first_30_s = output.read_text()
        finally:
            sse.close()
        ctrl_c(proc, output)

    # Then it printed under 60 lines: the banner with the demo storefront's URL among them
    lines = first_30_s.splitlines()
    assert len(lines) < 60, first_30_s
    notifier = f"http://127.0.0.1:{dev_env['SOCIALPROOF_NOTIFIER_PORT']}"
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
