"""The dev stack's console (tools/console.py): which lines of the children it shows, and the
activity summary it computes from the worker's and the notifier's /metrics."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from socialproof import metrics
from socialproof.processes import ManagedProcess
from tools import console
from tools.console import Activity, Console, LineFilter, Snapshot, record_of, snapshot, summary_line

WORKER_METRICS = """\
# HELP socialproof_events_processed_total Events the stream processor applied to the serving store
# TYPE socialproof_events_processed_total counter
socialproof_events_processed_total{event_type="purchase.completed",topic="orders.events"} 30.0
socialproof_events_processed_total{event_type="review.posted",topic="social.reviews"} 4.5
socialproof_events_processed_total{event_type="product.shared",topic="social.shares"} 5.0
# HELP socialproof_events_processed_created Events the stream processor applied to the serving store
# TYPE socialproof_events_processed_created gauge
socialproof_events_processed_created{event_type="purchase.completed",topic="orders.events"} 1.7e+09
# HELP socialproof_processor_lag_seconds How far behind its partitions the worker is
# TYPE socialproof_processor_lag_seconds gauge
socialproof_processor_lag_seconds 0.125
"""
NOTIFIER_METRICS = """\
# HELP socialproof_live_connections Live update connections (SSE and WebSocket) the notifier holds open
# TYPE socialproof_live_connections gauge
socialproof_live_connections 3.0
# HELP socialproof_http_requests_total HTTP requests handled
# TYPE socialproof_http_requests_total counter
socialproof_http_requests_total{method="GET",route="/metrics",service="notifier",status="200"} 7.0
"""
BEFORE = Snapshot(at=100.0, events={"purchase.completed": 10.0, "review.posted": 2.0},
                  lag_s=0.0, live=0.0)


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("07:29:15.707 INFO    socialproof.social: user.profile_updated  event_id=4ba9", 20),
        ("07:29:14.555 WARNING socialproof.kafka: GETPID [social#producer-1]: retrying", 30),
        ("07:29:14.555 ERROR   uvicorn.error: Exception in ASGI application", 40),
        ("\x1b[?25h07:29:37.669 INFO    faust.worker: [^_Worker]: Signal received: 15 (15)", 20),
        ('{"ts":"2026-12-04T07:29:15.707+00:00","level":"warning","logger":"x","msg":"m"}', 30),
        ("2026-12-04T07:29:09.249 [main] INFO kafka.server.ControllerServer - Starting", 20),
        ("2026-12-04T07:34:58.277 [kafka-shutdown-hook] WARN o.a.k.c.NetworkClient - closed", 30),
        ("[2026-12-04 07:29:09,249] ERROR [KafkaServer id=1] Fatal error during startup", 40),
        ("%3|1701234567.123|FAIL|rdkafka#producer-1| [thrd:127.0.0.1:9092]: Connect refused", 40),
        ("%4|1701234567.123|GETPID|rdkafka#producer-1| [thrd:main]: retrying", 30),
        ("%6|1796369673.292|BGQUEUE|rdkafka#producer-2| Purging 1 unserved events", 20),
        ("14076:C 04 Dec 2026 07:28:48.378 # oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo", 20),
        ("14076:M 04 Dec 2026 07:28:48.379 # Server initialized", 20),
        ("14076:M 04 Dec 2026 07:28:48.379 # WARNING Memory overcommit must be enabled!", 30),
        ("14076:M 04 Dec 2026 07:28:48.379 # Can't open the append-only file: Permission denied",
         30),
        ("14076:signal-handler (1796369337) Received SIGTERM scheduling shutdown...", 20),
        ("Traceback (most recent call last):", None),
        ("  File \"/work/main/tools/simulate.py\", line 452, in simulate", None),
    ],
)
def test_the_level_of_each_kind_of_line(line: str, level: int | None) -> None:
    record = record_of(line)
    assert (record.level if record else None) == level


def test_a_warning_is_the_same_whatever_its_time_and_extras() -> None:
    one = record_of("07:29:14.555 WARNING socialproof.kafka: publish failed  event_id=ab12 n=1")
    two = record_of("07:31:02.001 WARNING socialproof.kafka: publish failed  event_id=cd34 n=2")
    other = record_of("07:31:02.001 WARNING socialproof.kafka: producer replaced")
    assert one and two and other
    assert one.key == two.key != other.key


def test_the_filter_shows_warnings_errors_their_tracebacks_and_crashes() -> None:
    shown = LineFilter()
    lines = [
        ("07:29:14.019 INFO    uvicorn.error: Started server process [15331]", False),
        ("07:29:14.019 INFO    uvicorn.error: Waiting for application startup.", False),
        ("07:29:15.707 INFO    socialproof.social: user.profile_updated  event_id=1", False),
        ("07:29:16.000 WARNING services.notifier.hub: change subscription lost; retrying", True),
        ("07:29:17.000 ERROR   uvicorn.error: Exception in ASGI application", True),
        ("Traceback (most recent call last):", True),
        ('  File "/app.py", line 3, in handler', True),
        ("ValueError: boom", True),
        ("07:29:18.000 INFO    socialproof.orders: order accepted  event_id=2", False),
        ("  a plain line after an info record", False),
        ("╭───────────────────── Traceback (most recent call last) ──────────────────────╮", True),
        ("│ /work/main/cli/services.py:32 in serve                                       │", True),
        ("ImportError: cannot import name 'live' from 'services.notifier'", True),
        ("07:29:19.000 INFO    socialproof.orders: order accepted  event_id=3", False),
        ("some library chatter", False),
        ("Error: the port is in use", True),
        ("/x/y.py:12: DeprecationWarning: use z instead", True),
    ]
    assert [shown(line) for line, _ in lines] == [want for _, want in lines]


def test_the_same_message_shows_once_a_minute() -> None:
    now = [0.0]
    shown = LineFilter(clock=lambda: now[0])
    line = "07:29:16.{n:03d} WARNING socialproof.kafka: publish failed  event_id={n}"
    assert shown(line.format(n=1))
    now[0] = 59.0
    assert not shown(line.format(n=2))
    assert shown("07:29:16.500 WARNING socialproof.kafka: producer replaced")
    now[0] = 60.5
    assert shown(line.format(n=3))


def test_start_up_warnings_of_the_kafka_clients_hide_only_while_starting() -> None:
    starting = [True]
    shown = LineFilter(starting=lambda: starting[0])
    getpid = ("07:29:14.555 WARNING socialproof.kafka: GETPID [catalog#producer-1] [thrd:main]: "
              "Failed to acquire idempotence PID from broker 127.0.0.1:9092/1: Broker: "
              "Coordinator load in progress: retrying")
    dead = ("07:34:39.027 WARNING aiokafka.consumer.group_coordinator: Marking the coordinator "
            "dead (node 1)for group socialproof-processor.")
    assert not shown(getpid) and not shown(dead)
    starting[0] = False
    assert shown(getpid) and shown(dead)


def test_the_console_shows_warnings_by_default_and_everything_when_verbose() -> None:
    info = "07:29:15.707 INFO    socialproof.orders: order accepted  event_id=1"
    warning = "07:29:16.000 WARNING socialproof.orders: slow"
    kafka_warn = "2026-12-04T07:34:58.277 [hook] WARN o.a.k.c.NetworkClient - already closed"
    kafka_error = "2026-12-04T07:34:58.277 [main] ERROR kafka.Kafka - no space left"
    for verbose, want in ((False, [warning]), (True, [info, warning])):
        stream = io.StringIO()
        term = Console(verbose=verbose, stream=stream)
        echo, broker = term.echo_for("orders"), term.echo_for("kafka", quiet=True)
        for line in (info, warning):
            echo(line)
        broker(kafka_warn)
        broker(kafka_error)  # the broker: errors only, verbose or not
        term.note("orders", "ready at http://127.0.0.1:8002")
        assert stream.getvalue().splitlines() == [
            *(f"orders    | {line}" for line in want),
            f"kafka     | {kafka_error}",
            "orders     ready at http://127.0.0.1:8002",
        ]


def test_a_live_status_line_stays_below_what_is_written() -> None:
    stream = io.StringIO()
    term = Console(stream=stream, live=True)
    term.status("12:00:01  idle")
    term.write("orders    | a warning")
    term.end_status()
    assert stream.getvalue() == (
        "\r\x1b[K12:00:01  idle" "\r\x1b[Korders    | a warning\n12:00:01  idle" "\r\x1b[K"
    )


def test_the_metric_names_are_the_ones_the_services_export() -> None:
    assert metrics.EVENTS_PROCESSED.describe()[0].name + "_total" == console.EVENTS
    assert metrics.PROCESSOR_LAG.describe()[0].name == console.LAG
    assert metrics.LIVE_CONNECTIONS.describe()[0].name == console.LIVE


def test_a_summary_of_events_per_second_by_type_lag_and_live_connections() -> None:
    now = snapshot(WORKER_METRICS, NOTIFIER_METRICS, at=105.0)
    assert now.events == {"purchase.completed": 30.0, "review.posted": 4.5, "product.shared": 5.0}
    assert (now.lag_s, now.live) == (0.125, 3.0)
    wide = summary_line(BEFORE, now, "12:00:05", width=120)
    assert wide == ("12:00:05  events/s 5.5: purchase.completed 4.0 · product.shared 1.0 · "
                    "review.posted 0.5 | lag 0.1 s | live 3")
    line = summary_line(BEFORE, now, "12:00:05")
    assert line == ("12:00:05  events/s 5.5: purchase.completed 4.0 · product.shared 1.0 · "
                    "+1 more | lag 0.1 s | live 3")
    assert len(line) <= 100
    narrow = summary_line(BEFORE, now, "12:00:05", width=80)
    assert narrow == ("12:00:05  events/s 5.5: purchase.completed 4.0 · +2 more | lag 0.1 s | "
                      "live 3")


def test_a_summary_when_idle_or_when_the_worker_does_not_answer() -> None:
    same = Snapshot(at=101.0, events=dict(BEFORE.events or {}), lag_s=0.0, live=1.0)
    assert summary_line(BEFORE, same, "12:00:01") == "12:00:01  idle | lag 0.0 s | live 1"
    gone = snapshot(None, None, at=102.0)
    assert summary_line(BEFORE, gone, "12:00:02") == (
        "12:00:02  events/s ? (the worker does not answer) | lag ? | live ?"
    )
    restarted = Snapshot(at=101.0, events={"purchase.completed": 3.0}, lag_s=0.0, live=0.0)
    assert "purchase.completed 3.0" in summary_line(BEFORE, restarted, "12:00:01")


def test_without_a_terminal_a_summary_every_5_s_and_an_idle_stack_once_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    clock = [0.0]
    events = {"purchase.completed": 0.0}
    activity = Activity(Console(stream=stream, live=False), "http://w", "http://n",
                        clock=lambda: clock[0])
    monkeypatch.setattr(activity, "sample",
                        lambda: Snapshot(clock[0], dict(events), 0.0, 0.0))
    for second in range(0, 131):
        clock[0] = float(second)
        if second <= 20:
            events["purchase.completed"] += 5  # busy for 20 s, then idle
        activity.tick()
    activity.close()
    lines = stream.getvalue().splitlines()
    busy = [line for line in lines if "events/s" in line]
    idle = [line for line in lines if "idle" in line]
    assert len(busy) == 4 and all("events/s 5.0: purchase.completed 5.0" in b for b in busy)
    assert len(idle) == 2  # when it went idle, then a minute later
    assert len(lines) == 6


def test_a_managed_process_hands_every_line_to_echo_to_and_to_its_log(tmp_path: Path) -> None:
    seen: list[str] = []
    proc = ManagedProcess(
        name="child",
        argv=[sys.executable, "-c", "print('one'); print('two')"],
        echo_to=seen.append,
        log_path=tmp_path / "child.log",
    ).start()
    assert proc.proc is not None and proc.proc.wait(10) == 0
    proc.stop()
    assert seen == ["one", "two"]
    assert (tmp_path / "child.log").read_text() == "one\ntwo\n"


def test_the_live_connections_the_summary_shows_are_counted_by_the_notifier_hub() -> None:
    from prometheus_client import REGISTRY

    from services.notifier.hub import Hub

    def live() -> float:
        return REGISTRY.get_sample_value("socialproof_live_connections") or 0.0

    hub = Hub(redis=None, channel="changes", read_encoded=None)  # type: ignore[arg-type]
    before = live()
    one, two = hub.subscribe(frozenset({"p1"})), hub.subscribe(frozenset({"p1", "p2"}))
    assert live() == before + 2
    hub.unsubscribe(one)
    hub.unsubscribe(one)  # twice (a stream's error path and its end): counted once
    assert live() == before + 1
    hub.unsubscribe(two)
    assert live() == before
