"""An SSE client that reconnects by itself, the way a browser's ``EventSource`` (and so the widget)
does: when the stream ends or the connection fails it waits ``retry`` (the server's ``retry:``
field, else a default) and connects again with ``Last-Event-ID`` set to the last id it saw.

Tests use it to check the server side of reconnection: after a notifier restart, the client gets
the current state at once. ``connections`` counts successful (200) connections.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.support.sse import SseEvent


@dataclass
class EventSource:
    url: str
    retry_s: float = 0.2
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue = field(default_factory=queue.Queue)
    last_id: str | None = None
    connections: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _client: httpx.Client | None = None

    def __enter__(self) -> EventSource:
        self._thread = threading.Thread(target=self._run, daemon=True, name="eventsource")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        client = self._client
        if client is not None:
            client.close()  # ends a read blocked on an idle stream, so the server sees us go
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._read_once()
                self.failures.append("stream ended")
            except (httpx.HTTPError, RuntimeError, OSError) as exc:  # closed under us on exit
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.retry_s)

    def _read_once(self) -> None:
        headers = dict(self.headers)
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        with httpx.Client(timeout=httpx.Timeout(5.0, read=60.0)) as client:
            self._client = client
            with client.stream("GET", self.url, headers=headers) as response:
                if response.status_code != 200:
                    self.failures.append(f"HTTP {response.status_code}")
                    return
                self.connections += 1
                current = SseEvent()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if current.data:
                            if current.id is not None:
                                self.last_id = current.id
                            self.events.put(current)
                        current = SseEvent()
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            current.data = f"{current.data}\n{value}" if current.data else value
                        elif name == "event":
                            current.event = value
                        elif name == "id":
                            current.id = value
                        elif name == "retry" and value.isdigit():
                            self.retry_s = int(value) / 1000

    def next_matching(self, predicate, timeout: float) -> SseEvent:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching event within {timeout}s from {self.url}; "
                    f"connections={self.connections}, failures={self.failures[-3:]}"
                )
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(event):
                return event
