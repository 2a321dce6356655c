"""One coarse clock for the notifier's many far-away deadlines.

Every live connection spends its life waiting: for its next change, with a heartbeat deadline
(``SOCIALPROOF_SSE_HEARTBEAT_S``, 15 s), and, while it writes, with a send deadline (30 s; a client
that stops reading is cut off). With ``asyncio.timeout`` each wait and each write starts and
cancels a loop timer, although the change or the write nearly always comes first: measured under
uvloop with 5,000 timers pending, ``asyncio.timeout`` around an already-set event costs 4.9 us,
``loop.call_at`` + ``cancel`` 3.2 us, the wait alone 0.1 us. At 10,000 SSE sends a second (bench
``sse_fanout_x5``) that is 20,000 timers a second: py-spy put about a fifth of the notifier's
Python time in them, on a process that was short of CPU.

Deadlines that far away need no precision. Here a waiter writes its deadline into a dict (no
timer) and one task looks at them every ``tick_s`` (0.25 s): a heartbeat goes out up to a tick
late, a stuck send is cut off up to a tick late. A wait shorter than ``coarse_from_s`` (1 s: the
pacing of a product that changes faster than 4 times a second, tests with short heartbeats) still
gets an exact timer, and so does every wait while the clock is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

#: how often the clock looks at the deadlines it holds (s)
TICK_S = 0.25
#: waits at least this long are left to the clock; shorter ones get their own timer (s)
COARSE_FROM_S = 1.0


class CoarseClock:
    """Wake-ups and send deadlines for many connections, checked by one task."""

    def __init__(self, tick_s: float = TICK_S, coarse_from_s: float = COARSE_FROM_S) -> None:
        self.tick_s, self.coarse_from_s = tick_s, coarse_from_s
        #: events waited on -> the loop time at which the clock sets them
        self._sleepers: dict[asyncio.Event, float] = {}
        #: tasks writing -> the loop time past which the clock cancels them
        self._writers: dict[asyncio.Task, float] = {}
        #: tasks the clock cancelled, until their deadline context turns that into TimeoutError
        self._overran: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._stopped = False

    def start(self) -> None:
        self._stopped = False
        self._task = asyncio.create_task(self._run(), name="notifier-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stopped = True
        for event in self._sleepers:  # nobody is left waiting for a tick that never comes
            event.set()

    @property
    def running(self) -> bool:
        return self._task is not None

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` passed; whether it was set before that
        (False too when the clock stopped meanwhile). The clock sets the event itself when the
        deadline passes: a caller that clears it before waiting, as a mailbox does, sees no
        difference."""
        if event.is_set():
            return True
        if timeout < self.coarse_from_s or self._task is None:
            try:
                async with asyncio.timeout(timeout):
                    await event.wait()
                return True
            except TimeoutError:
                return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._sleepers[event] = deadline
        try:
            await event.wait()
        finally:
            self._sleepers.pop(event, None)
        return not self._stopped and loop.time() < deadline

    def deadline(self, seconds: float) -> _Deadline | asyncio.Timeout:
        """``async with clock.deadline(30): await send(...)``: like ``asyncio.timeout`` (the
        block raises TimeoutError if it overruns), checked by the clock for long deadlines."""
        if seconds < self.coarse_from_s or self._task is None:
            return asyncio.timeout(seconds)
        return _Deadline(self, seconds)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            for event, at in list(self._sleepers.items()):
                if at <= now:
                    event.set()
            for task, at in list(self._writers.items()):
                if at <= now and task not in self._overran:
                    self._overran.add(task)
                    task.cancel()


class _Deadline:
    """The context :meth:`CoarseClock.deadline` gives for a long deadline."""

    __slots__ = ("clock", "seconds", "task")

    def __init__(self, clock: CoarseClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None, "a deadline is used inside a task"
        self.task = task
        self.clock._writers[task] = asyncio.get_running_loop().time() + self.seconds

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self.task
        assert task is not None
        del self.clock._writers[task]
        if task in self.clock._overran:
            self.clock._overran.discard(task)
            # the clock's cancellation, not someone else's: it becomes a TimeoutError, as
            # asyncio.timeout does
            if task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
