"""A small Server-Sent Events client for tests: reads a stream on a thread, parses events."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field

import httpx


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class SseClient:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: queue.Queue = field(default_factory=queue.Queue)
    status: int | None = None
    error: Exception | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _connected: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> SseClient:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._connected.wait(10):
            raise AssertionError(f"SSE connection to {self.url} did not open within 10s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as exc:
            self.error = exc  # the server went away; tests that care look at .error
        finally:
            self._connected.set()

    def _read(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as client:
            with client.stream("GET", self.url, headers=self.headers) as response:
                self.status = response.status_code
                self._connected.set()
                current = SseEvent()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line == "":
                        if current.data or current.event != "message":
                            self.events.put(current)
                        current = SseEvent()
                    elif line.startswith(":"):
                        continue  # comment / heartbeat
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            current.event = value
                        elif name == "data":
                            current.data = f"{current.data}\n{value}" if current.data else value
                        elif name == "id":
                            current.id = value

    def next(self, timeout: float = 5.0) -> SseEvent:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SSE event within {timeout}s from {self.url}") from None

    def next_matching(self, predicate, timeout: float = 5.0) -> SseEvent:
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching SSE event within {timeout}s")
            event = self.next(remaining)
            if predicate(event):
                return event
