"""Child processes of socialproof's own: start one with its output prefixed and kept, wait for a
condition with a deadline, stop its whole process group. Production uses it for the replay
worker that ``replay rebuild`` runs (:mod:`ops.rebuild`) and for the notifier's extra processes
(:mod:`socialproof.serve`); the dev stack and the tests build on it (:mod:`tools.devstack`).

Children are started in their own process group and get SIGTERM if their parent dies
(PR_SET_PDEATHSIG), so nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ProcessError(RuntimeError):
    """A child process died or a condition never came true; the message says what."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it is true; raise ProcessError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except ProcessError:
            raise  # a dead process, not a slow one: no point in waiting
        except Exception as exc:  # conditions probe things that are still starting
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux), own process group.

    PR_SET_PDEATHSIG fires when the *thread* that started the child ends, not the process:
    start long-lived children from a long-lived thread (the main thread), never from a worker
    thread such as ``asyncio.to_thread``."""
    os.setsid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """A child process whose output is prefixed with its name, line by line.

    Every line goes to ``log_path`` (if set); with ``echo`` it is also printed, or handed to
    ``echo_to``, which decides what to show (the dev stack's console shows warnings only)."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    echo: bool = True
    color: str = ""
    log_path: Path | None = None
    echo_to: Callable[[str], None] | None = None
    proc: subprocess.Popen | None = None
    _pump: threading.Thread | None = None
    _tail: list[str] = field(default_factory=list)

    def start(self) -> ManagedProcess:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self._pump = threading.Thread(target=self._copy_output, daemon=True, name=self.name)
        self._pump.start()
        return self

    def _copy_output(self) -> None:
        assert self.proc and self.proc.stdout
        prefix = f"{self.name:<10}| "
        if self.color and sys.stdout.isatty():
            prefix = f"\033[{self.color}m{prefix}\033[0m"
        log_file = self.log_path.open("a") if self.log_path else None
        try:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                self._tail.append(line)
                del self._tail[:-200]
                if log_file:
                    log_file.write(line + "\n")
                    log_file.flush()
                if not self.echo:
                    continue
                if self.echo_to is not None:
                    try:
                        self.echo_to(line)
                        continue
                    except Exception:  # never stop reading: a full pipe would block the child
                        pass
                print(prefix + line, flush=True)
        finally:
            if log_file:
                log_file.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self._tail[-lines:])

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL what is left."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
        # Whatever the leader left in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._pump:
            self._pump.join(timeout=2)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault-injection tests)."""
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(5)

    def ensure_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessError(
                f"{self.name} exited with code {self.proc.returncode}; its last output:\n"
                + self.tail()
            )


def stop_together(procs: list[ManagedProcess], timeout: float) -> None:
    """SIGTERM every process at once (a stopped one is continued first), then wait for each,
    SIGKILLing whatever is left when ``timeout`` has passed: the nodes of a cluster stop in
    parallel rather than one after another."""
    for proc in procs:
        proc.signal(signal.SIGCONT)
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.stop(timeout=max(0.1, deadline - time.monotonic()))


def service_argv(service: str) -> list[str]:
    return [sys.executable, "-m", "cli", "serve", service]


def worker_argv() -> list[str]:
    return [sys.executable, "-m", "cli", "worker"]
