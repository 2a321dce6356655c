"""The orders service tunes its garbage collector once its view has caught up (the end of its
start-up; why: services.orders.app's docstring), not before, and only once."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from types import SimpleNamespace

from services.orders.app import tuning_gc_once_caught_up


def replaying_service() -> tuple[SimpleNamespace, SimpleNamespace, object]:
    """(its view, still replaying; the app; a lifespan that puts the view on the app)."""
    view = SimpleNamespace(caught_up=False)
    app = SimpleNamespace(state=SimpleNamespace())

    @asynccontextmanager
    async def lifespan(app):
        app.state.view = view
        yield

    return view, app, lifespan


async def test_the_collector_is_tuned_once_the_view_caught_up() -> None:
    view, app, lifespan = replaying_service()
    tuned: list[float] = []
    loop = asyncio.get_running_loop()
    wrapped = tuning_gc_once_caught_up(
        lifespan, tune=lambda: tuned.append(loop.time()), poll_s=0.01
    )
    async with wrapped(app):  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert tuned == []  # still replaying
        view.caught_up = True
        deadline = loop.time() + 2
        while not tuned and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert len(tuned) == 1
        await asyncio.sleep(0.05)
        assert len(tuned) == 1  # once


async def test_a_service_stopped_while_replaying_never_tunes() -> None:
    view, app, lifespan = replaying_service()
    tuned: list[bool] = []
    async with tuning_gc_once_caught_up(lifespan, tune=lambda: tuned.append(True), poll_s=0.01)(
        app  # type: ignore[arg-type]
    ):
        await asyncio.sleep(0.03)
    view.caught_up = True
    await asyncio.sleep(0.05)
    assert tuned == []
