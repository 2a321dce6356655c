"""The dev stack's console: what ``socialproof run`` prints while the stack runs.

Every child's output goes to its log file in full (:class:`~socialproof.processes.ManagedProcess`);
the terminal gets only what a person needs:

- one line per process once it is ready (:meth:`Console.note`), and the banner;
- the lines a child logs at WARNING or above, Python tracebacks, and lines that are neither log
  records nor chatter but name an error (:class:`LineFilter`); ``--verbose`` shows every line;
- a summary of activity (:class:`Activity`): events/s by type from the stream worker's
  ``/metrics``, its lag, and the notifier's live connections. On a terminal it is one status
  line at the bottom, rewritten once a second (so the banner does not scroll away); without a
  terminal (a pipe, a file) it is a new line every 5 s, averaged over those 5 s, and an idle
  stack prints one ``idle`` line a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

WARNING = 30
ERROR = 40

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DIGITS = re.compile(r"\d+")
_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40,
           "FATAL": 50, "CRITICAL": 50}
# socialproof.logs' console format: "12:00:01.234 WARNING logger: message  key=value"
_CONSOLE_LOG = re.compile(r"^\d\d:\d\d:\d\d(?:\.\d+)? +([A-Z]+) +(.*?)(?:  \S+=.*)?$")
# Apache Kafka's log4j lines: "2026-12-04T07:29:09.249 [main] WARN logger - message"
_LOG4J = re.compile(r"^\[?\d{4}-\d\d-\d\d[T ][\d:.,]+\]? (?:\[[^\]]*\] )?"
                    r"(TRACE|DEBUG|INFO|WARN|ERROR|FATAL) (.*)")
# librdkafka's own lines (syslog levels): "%3|1701234567.123|FAIL|rdkafka#producer-1| ..."
_RDKAFKA = re.compile(r"^%(\d)\|[\d.]+\|(.*)")
# redis-server: "1234:M 04 Dec 2026 07:29:08.727 # message"; "#" is its warning level, and at
# --loglevel warning the only one printed, start and stop notices included
_REDIS = re.compile(r"^\d+:[A-Z] \d\d \w{3} \d{4} [\d:.]+ ([.\-*#]) (.*)")
_REDIS_SIGNAL = re.compile(r"^\d+:signal-handler ")
_REDIS_CHATTER = re.compile(
    r"oO0OoO0OoO0Oo|^Redis version=|^Configuration loaded|^Server initialized|"
    r"^User requested shutdown|^Redis is now ready to exit|^Saving the final|^DB saved on disk|"
    r"^Removing the pid file|^Calling fsync\(\) on the AOF"
)
# Warnings the Kafka clients log on every start while the broker's group and transaction
# coordinators load; they retry by themselves. Shown once the stack is up (then they mean
# trouble), hidden while it starts.
_STARTING = re.compile(
    r"Failed to acquire idempotence PID|Coordinator load in progress|"
    r"Marking the coordinator dead|NOT_COORDINATOR|Not coordinator"
)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
_ERROR_WORDS = re.compile(r"\b(error|exception|fatal|critical|panic|\w+Warning)\b", re.I)


def strip_ansi(line: str) -> str:
    return _ANSI.sub("", line)


@dataclass(frozen=True)
class Record:
    """One output line that is a log record: its level (``logging``'s numbers) and what makes
    it the same as another (logger and message, digits left out; not the time nor the extras)."""

    level: int
    key: str


def record_of(line: str) -> Record | None:
    """The log record one output line is, in any format the stack's processes write (theirs,
    JSON, Kafka's, librdkafka's, Redis'), or None (a continuation, a plain print)."""
    text = strip_ansi(line).strip()
    level: int | None = None
    what = text
    if match := _CONSOLE_LOG.match(text):
        level, what = _LEVELS.get(match.group(1)), match.group(2)
    elif text.startswith("{") and '"level"' in text:
        try:
            fields = orjson.loads(text)
        except orjson.JSONDecodeError:
            fields = None
        if isinstance(fields, dict) and isinstance(fields.get("level"), str):
            level = _LEVELS.get(fields["level"].upper(), 20)
            what = f"{fields.get('logger')}: {fields.get('msg')}"
    elif match := _LOG4J.match(text):
        level, what = _LEVELS[match.group(1)], match.group(2)
    elif match := _RDKAFKA.match(text):
        syslog = int(match.group(1))
        level = 40 if syslog <= 3 else 30 if syslog == 4 else 20 if syslog <= 6 else 10
        what = match.group(2)
    elif match := _REDIS.match(text):
        chatter = match.group(1) != "#" or _REDIS_CHATTER.search(match.group(2))
        level, what = (20 if chatter else 30), match.group(2)
    elif _REDIS_SIGNAL.match(text):
        level = 20
    if level is None:
        return None
    return Record(level, _DIGITS.sub("#", what))


class LineFilter:
    """Which lines of one process the console shows: call it with each line, in order.

    A log record shows at ``min_level`` or above, with the lines that continue it (a logged
    exception's traceback), but the same message (logger and text) at most once a minute,
    and not the Kafka clients' start-up warnings while ``starting()``. A traceback printed
    outside logging (a crash) shows whole, up to the next log record. Any other line shows only
    if it names an error or a warning."""

    REPEAT_S = 60.0

    def __init__(
        self,
        min_level: int = WARNING,
        starting: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_level = min_level
        self.starting = starting
        self.clock = clock
        self._continuing = False  # the lines that follow belong to a shown record
        self._shown: dict[str, float] = {}  # when each message was last shown

    def __call__(self, line: str) -> bool:
        record = record_of(line)
        if record is not None:
            self._continuing = self._show(record, line)
            return self._continuing
        text = strip_ansi(line).strip()
        if _TRACEBACK.search(text):
            self._continuing = True
            return True
        if self._continuing:
            return bool(text)
        return bool(_ERROR_WORDS.search(text))

    def _show(self, record: Record, line: str) -> bool:
        if record.level < self.min_level:
            return False
        if record.level == WARNING and self.starting() and _STARTING.search(line):
            return False
        now = self.clock()
        if now - self._shown.get(record.key, -self.REPEAT_S) < self.REPEAT_S:
            return False
        if len(self._shown) > 1000:
            self._shown.clear()
        self._shown[record.key] = now
        return True


class Console:
    """The terminal, shared by every child's output thread and the main thread.

    ``live`` (default: stdout is a terminal) keeps one status line at the bottom, rewritten in
    place; whatever else is written goes above it."""

    def __init__(
        self, verbose: bool = False, stream: TextIO | None = None, live: bool | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose
        terminal = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.live = terminal if live is None else live
        self.color = terminal
        #: the stack is starting: the Kafka clients' start-up warnings are expected
        self.starting = True
        self._status = ""
        self._lock = threading.Lock()

    def _name(self, name: str, color: str) -> str:
        padded = f"{name:<10}"
        return f"\033[{color}m{padded}\033[0m" if color and self.color else padded

    def echo_for(
        self, name: str, color: str = "", quiet: bool = False
    ) -> Callable[[str], None]:
        """What a child's output thread calls with each line. ``quiet``: errors only, even
        with ``--verbose`` (the broker's own log: hundreds of lines a start, and warnings that
        need nothing from anyone)."""
        if quiet:
            keep: Callable[[str], bool] | None = LineFilter(ERROR, lambda: self.starting)
        elif self.verbose:
            keep = None
        else:
            keep = LineFilter(WARNING, lambda: self.starting)
        prefix = self._name(name, color) + "| "

        def echo(line: str) -> None:
            if keep is None or keep(line):
                self.write(prefix + line)

        return echo

    def note(self, name: str, text: str, color: str = "") -> None:
        """A line of the stack's own about one process (started, ready)."""
        self.write(f"{self._name(name, color)} {text}")

    def write(self, line: str) -> None:
        with self._lock:
            if self._status:
                self.stream.write("\r\033[K" + line + "\n" + self._status)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()

    def status(self, line: str) -> None:
        """Show the activity summary: in place when live, as a new line otherwise."""
        if not self.live:
            self.write(line)
            return
        with self._lock:
            self._status = line
            self.stream.write("\r\033[K" + line)
            self.stream.flush()

    def end_status(self) -> None:
        """Remove the status line, and the ``^C`` the terminal echoed at the cursor (before
        the stack's last words, or an error)."""
        with self._lock:
            if self.live:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self._status = ""

    @property
    def width(self) -> int:
        """The summary's: the terminal's (``COLUMNS``), 100 without one."""
        return shutil.get_terminal_size((100, 24)).columns - (1 if self.live else 0)


# --- the activity summary -----------------------------------------------------------------------

EVENTS = "socialproof_events_processed_total"
LAG = "socialproof_processor_lag_seconds"
LIVE = "socialproof_live_connections"


@dataclass(frozen=True)
class Snapshot:
    """What the metrics said at one moment (``at``: monotonic seconds); None: not answering."""

    at: float
    events: dict[str, float] | None  # events processed so far, by type
    lag_s: float | None
    live: float | None


def snapshot(worker_text: str | None, notifier_text: str | None, at: float) -> Snapshot:
    """From the worker's and the notifier's ``/metrics`` (Prometheus text)."""
    events: dict[str, float] | None = None
    lag = live = None
    if worker_text is not None:
        events = {}
        for family in text_string_to_metric_families(worker_text):
            for sample in family.samples:
                if sample.name == EVENTS:
                    kind = sample.labels.get("event_type", "?")
                    events[kind] = events.get(kind, 0.0) + sample.value
                elif sample.name == LAG:
                    lag = sample.value
    if notifier_text is not None:
        live = 0.0
        for family in text_string_to_metric_families(notifier_text):
            for sample in family.samples:
                if sample.name == LIVE:
                    live += sample.value
    return Snapshot(at, events, lag, live)


def rates(before: Snapshot, now: Snapshot) -> dict[str, float] | None:
    """Events per second by type between two snapshots (types with none left out)."""
    if before.events is None or now.events is None:
        return None
    seconds = max(now.at - before.at, 1e-6)
    found = {}
    for kind, total in now.events.items():
        delta = total - before.events.get(kind, 0.0)
        if delta < 0:  # the worker restarted: its counters too
            delta = total
        if delta > 0:
            found[kind] = delta / seconds
    return found


def summary_line(before: Snapshot, now: Snapshot, clock: str, width: int = 100) -> str:
    """``12:00:01  events/s 5.0: purchase.completed 3.0 · review.posted 2.0 | lag 0.1 s | live 3``:
    events processed per second by type (the busiest first, as many as fit in ``width``), the
    stream worker's lag and the notifier's live connections."""
    by_type = rates(before, now)
    lag = "?" if now.lag_s is None else f"{now.lag_s:.1f} s"
    live = "?" if now.live is None else f"{now.live:.0f}"
    tail = f" | lag {lag} | live {live}"
    head = f"{clock}  "
    if by_type is None:
        return (head + "events/s ? (the worker does not answer)" + tail)[:width]
    if not by_type:
        return (head + "idle" + tail)[:width]
    head += f"events/s {sum(by_type.values()):.1f}: "
    items = [f"{kind} {rate:.1f}" for kind, rate in
             sorted(by_type.items(), key=lambda item: (-item[1], item[0]))]
    room = width - len(head) - len(tail)
    shown = items[:1]  # the busiest type always
    for i, item in enumerate(items[1:], start=2):
        left = len(items) - i
        if len(" · ".join([*shown, item, *([f"+{left} more"] if left else [])])) > room:
            break
        shown.append(item)
    if hidden := len(items) - len(shown):
        shown.append(f"+{hidden} more")
    return (head + " · ".join(shown) + tail)[:width]


class Activity:
    """Scrapes the worker's and the notifier's ``/metrics`` and shows the summary: call
    :meth:`tick` often (it does something once ``every_s`` has passed)."""

    IDLE_EVERY_S = 60.0

    def __init__(
        self,
        console: Console,
        worker_metrics: str,
        notifier_metrics: str,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.clock = clock
        self.urls = (worker_metrics, notifier_metrics)
        self.every = every_s or (1.0 if console.live else 5.0)
        self.client = httpx.Client(timeout=0.5)
        self._before: Snapshot | None = None
        self._due = 0.0
        self._idle_since: float | None = None  # when the last idle line was shown

    def _get(self, url: str) -> str | None:
        try:
            response = self.client.get(url)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None

    def sample(self) -> Snapshot:
        now = self.clock()
        worker, notifier = (self._get(url) for url in self.urls)
        try:
            return snapshot(worker, notifier, now)
        except ValueError:  # not Prometheus text: count it as not answering
            return Snapshot(now, None, None, None)

    def tick(self) -> None:
        now = self.clock()
        if now < self._due:
            return
        # on time, without catching up in a burst after a slow moment
        self._due = max(self._due + self.every, now + self.every / 2) if self._due else now + self.every
        current = self.sample()
        before, self._before = self._before, current
        if before is None:
            return  # the first sample is the baseline
        if not self.console.live:  # lines pile up: an idle stack says so once a minute
            if rates(before, current) != {}:
                self._idle_since = None
            elif self._idle_since is not None and now - self._idle_since < self.IDLE_EVERY_S:
                return
            else:
                self._idle_since = now
        self.console.status(
            summary_line(before, current, time.strftime("%H:%M:%S"), self.console.width)
        )

    def close(self) -> None:
        self.client.close()
