"""services.notifier.clock: long waits and send deadlines without a timer each, up to a tick late,
never early; short ones exact; a deadline overrun is a TimeoutError, anyone else's cancellation
stays a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.notifier.clock import CoarseClock
from services.notifier.hub import Mailbox

TICK = 0.05


@pytest.fixture
async def clock() -> AsyncIterator[CoarseClock]:
    clock = CoarseClock(tick_s=TICK, coarse_from_s=0.2)
    clock.start()
    yield clock
    await clock.stop()


async def test_a_long_wait_ends_when_its_event_is_set_and_takes_no_timer(
    clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    call_at = loop.call_at
    monkeypatch.setattr(loop, "call_at", lambda when, *a, **k: timers.append(when) or call_at(
        when, *a, **k))
    event = asyncio.Event()
    waiting = [asyncio.create_task(clock.wait(event, 30)) for _ in range(100)]
    await asyncio.sleep(0)
    assert len(timers) <= 1  # 100 waits: at most the clock's own next tick
    event.set()
    assert await asyncio.gather(*waiting) == [True] * 100
    short = asyncio.create_task(clock.wait(asyncio.Event(), 0.1))
    await asyncio.sleep(0)
    assert any(when > loop.time() + 0.05 for when in timers)  # a short wait: its own timer
    assert await short is False


async def test_a_long_wait_times_out_late_by_at_most_a_tick_never_early(clock) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await clock.wait(asyncio.Event(), 0.3) is False
    waited = loop.time() - started
    assert 0.3 <= waited <= 0.3 + 2 * TICK


async def test_a_short_wait_gets_an_exact_timer(clock) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await clock.wait(asyncio.Event(), 0.1) is False
    assert 0.1 <= loop.time() - started < 0.1 + TICK / 2


async def test_waits_work_without_a_running_clock() -> None:
    idle = CoarseClock()  # never started: every wait has its own timer
    assert await idle.wait(asyncio.Event(), 0.05) is False
    async with idle.deadline(5):
        await asyncio.sleep(0)


async def test_an_overrunning_block_raises_timeout_error_and_leaves_the_task_usable(clock) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with clock.deadline(0.3):
            await asyncio.sleep(10)
    assert 0.3 <= loop.time() - started <= 0.3 + 2 * TICK
    await asyncio.sleep(0.01)  # the task is not left cancelled
    async with clock.deadline(0.3):
        await asyncio.sleep(0.01)  # and a block within its deadline just finishes


async def test_someone_elses_cancellation_stays_a_cancellation(clock) -> None:
    async def write() -> None:
        async with clock.deadline(30):
            await asyncio.sleep(10)

    task = asyncio.create_task(write())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_mailbox_heartbeat_wait_ends_by_the_clock(clock) -> None:
    # Given a connection's mailbox with nothing to send, on the clock
    box = Mailbox(frozenset({"p1"}), 0.0, clock)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # When it waits for its heartbeat, nothing comes: it returns empty at the deadline
    assert await box.take(0.3) == {}
    assert 0.3 <= loop.time() - started <= 0.3 + 2 * TICK
    # And an offer during a long wait is handed out at once
    taking = asyncio.create_task(box.take(30))
    await asyncio.sleep(0.01)
    box.offer("p1", {"n": 1})
    assert await asyncio.wait_for(taking, 1) == {"p1": {"n": 1}}


async def test_stopping_the_clock_wakes_whoever_waits_on_it() -> None:
    clock = CoarseClock(tick_s=TICK, coarse_from_s=0.2)
    clock.start()
    waiting = asyncio.create_task(clock.wait(asyncio.Event(), 30))
    await asyncio.sleep(0.01)
    await clock.stop()
    assert await asyncio.wait_for(waiting, 1) is False
