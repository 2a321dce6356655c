"""Helpers for the catalog, orders and social API tests: clients, restarting a service process of
the session stack, and reading back what a service published to its topic."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import httpx

from contracts import codec
from contracts.events import Event
from contracts.topics import REWARDS, Topic
from socialproof.processes import service_argv
from socialproof.settings import Settings
from socialproof.topicview import Record, TopicView
from tools.devstack import Stack, wait_ready

T = TypeVar("T")


def run_async(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from a sync test, on a thread of its own: the calling thread
    may already run an event loop (Playwright's sync API keeps one for the whole session)."""

    async def main() -> T:
        return await scenario()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


@contextmanager
def api(stack: Stack, service: str, token: str | None) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=stack.url(service), headers=headers, timeout=15.0) as client:
        yield client


def restart_service(stack: Stack, service: str) -> None:
    """Stop the service's process (SIGTERM, as a deployment would) and start a new one on the
    same port; returns once the new process is ready, i.e. has rebuilt its view from the topics."""
    old = next(p for p in stack.processes if p.name == service and p.running)
    old.stop()
    stack.processes.remove(old)
    new = stack.start_process(service, service_argv(service))
    wait_ready(f"{stack.url(service)}/readyz", 60, f"the restarted {service} service", new)


def topic_records(settings: Settings, topic: Topic, key: str | None) -> list[Record]:
    """Every record with ``key`` (None: every record) on ``topic``, from the beginning up to
    now, in log order (per partition); read_committed where the topic's writer uses
    transactions (the rewards topic)."""
    found: list[Record] = []

    def keep(record: Record) -> None:
        if key is None or record.key_str == key:
            found.append(record)

    async def read() -> None:
        view = TopicView(
            settings,
            [topic],
            keep,
            name="tests",
            isolation="read_committed" if topic is REWARDS else None,
        )
        await view.start()
        try:
            assert await view.wait_until(lambda: view.caught_up, 20), "topic replay timed out"
        finally:
            await view.stop()

    run_async(read)
    return found


def topic_events(settings: Settings, topic: Topic, key: str) -> list[Event | None]:
    """Like :func:`topic_records`, decoded (None for a tombstone)."""
    return [
        None if r.value is None else codec.decode(r.value)
        for r in topic_records(settings, topic, key)
    ]
