"""Waiting for a condition with a deadline, instead of sleeping blindly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T], timeout: float, what: str, interval: float = 0.02
) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    Returns the truthy value, so ``body = wait_for(lambda: fetch() if ok else None, …)`` works.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = probe()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


async def wait_for_async(
    probe: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = 0.02
) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = await probe()
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)
