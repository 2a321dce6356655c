"""Comparing what the serving store holds with the processor's oracle, for fault-injection tests.

``first_mismatch`` reads every product's counters, ``friends_bought`` for some viewers and the
activity feed through :class:`services.notifier.proof.ProofReader` (what the notifier serves) and
returns the first difference from :class:`services.counters.oracle.Oracle`, or None.
``wait_converged`` polls it with a deadline, so a test never sleeps blindly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from services.counters.oracle import Oracle
from services.notifier.proof import ProofReader, to_json


async def first_mismatch(
    reader: ProofReader,
    oracle: Oracle,
    products: Sequence[str],
    viewers: Sequence[str],
    now_ms: int,
) -> str | None:
    """The first difference between store and oracle, or None; also counts what was checked."""
    states = await reader.read_many(list(products), now_ms=now_ms)
    for product, proof in zip(products, states, strict=True):
        got = to_json(proof)
        got.pop("as_of", None)
        want = oracle.proof(product, now_ms)
        if got != want:
            return f"{product}: store {got} != oracle {want}"
    for viewer in viewers:
        for product in products[:5]:
            count, names = await reader.friends_bought(viewer, product)
            want_friends = oracle.friends_who_bought(viewer, product)
            if count != len(want_friends):
                return f"friends_bought({viewer}, {product}): {count} != {len(want_friends)}"
            allowed = {oracle.first_name(f) for f in want_friends}
            if not set(names) <= allowed:
                return f"friends_bought({viewer}, {product}) names {names} not in {allowed}"
    for product in products[:5]:
        feed = [(a.kind, a.first_name, int(a.occurred_at.timestamp() * 1000))
                for a in await reader.activity(product)]
        if feed != oracle.activity(product):
            return f"activity({product}): {feed} != {oracle.activity(product)}"
    return None


async def wait_converged(
    reader: ProofReader,
    oracle: Oracle,
    products: Sequence[str],
    viewers: Sequence[str],
    now_ms: int,
    timeout: float,
    alive: Callable[[], None] = lambda: None,
) -> float:
    """Poll until the store equals the oracle; returns the seconds it took. ``alive`` is called
    between polls (e.g. a worker's ``ensure_alive``) so a crash fails fast, not at the deadline."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        problem = await first_mismatch(reader, oracle, products, viewers, now_ms)
        if problem is None:
            return time.monotonic() - started
        alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"no convergence to the oracle within {timeout}s: {problem}")
        await asyncio.sleep(0.2)
