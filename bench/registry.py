"""The scenario registry: add a benchmark by decorating a function with ``@scenario`` in a module
of its own (``bench/<scenario>.py``) and listing that module in ``bench.__main__``'s
``SCENARIO_MODULES``, which fixes the order the runner runs, lists and reports the scenarios.

A scenario receives a :class:`bench.env.BenchEnv` (a fresh embedded broker + Redis, or its own
topics and namespaces on existing servers; helpers to produce events and run workers) and a
``quick`` flag (tiny sizes for the test suite's smoke run), and returns a :class:`Result`: its
measured figures, the targets they are judged against, and a one-line summary that the runner
prints.

Rules that keep a run safe on servers shared with others (``env.existing``): Redis keys only
under a :func:`bench.env.new_namespace`; topic names only through
``socialproof.kafka.topic_name(env.settings, …)``; other processes get
``env.process_env(namespace)``; no server-wide commands (FLUSHDB, CONFIG RESETSTAT/SET) unless
``env.existing`` is false.

Figures are medians of repeated runs. By default the runner repeats a scenario ``repeats`` times
(each in a fresh environment) and reports the median of every numeric figure; the summary is then
a function of the figures so it describes the medians. A scenario whose set-up is too costly to
repeat whole (a seeded graph, a full stack) says ``repeats=1`` and repeats its measurement inside,
reporting medians itself (its notes say how).

Ingest figures are stated against the limit (:mod:`bench.limit`: what the machine can do at all
on the same broker, Redis and data). A result names its ingest figures in ``ingest``
({figure: who ingests}, e.g. ``{"batched_events_per_s": "our worker"}``); the runner prints each
as a fraction of the limit measured in the same run, and the report tabulates them
(:func:`bench.report.limit_fractions`). A scenario that measures the limit on its own backlog
names that figure in ``limit``; the others are stated against the ``limit`` scenario's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any


@dataclass
class Target:
    """A requirement: ``metric`` compared with ``op`` (">=" or "<") to ``value``."""

    metric: str
    op: str
    value: float
    unit: str = ""

    def met(self, figures: dict[str, Any]) -> bool | None:
        got = figures.get(self.metric)
        if got is None:
            return None
        return got >= self.value if self.op == ">=" else got < self.value

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}{self.unit}"


@dataclass
class Result:
    #: the one-line summary, or a function of the (median) figures that makes it
    summary: str | Callable[[dict[str, Any]], str]
    figures: dict[str, Any]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the ingest figures (events/s) to state as a fraction of the limit: {figure: who ingests}
    ingest: dict[str, str] = field(default_factory=dict)
    #: the figure holding the limit measured on this scenario's own backlog, if it has one
    limit: str | None = None

    def verdicts(self, figures: dict[str, Any] | None = None) -> dict[str, bool | None]:
        figures = self.figures if figures is None else figures
        return {t.describe(): t.met(figures) for t in self.targets}

    def summarize(self, figures: dict[str, Any] | None = None) -> str:
        figures = self.figures if figures is None else figures
        return self.summary(figures) if callable(self.summary) else self.summary


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[..., Result]
    #: how many times the runner repeats the scenario (median of the figures); quick runs once
    repeats: int = 3


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str, description: str, repeats: int = 3
) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Register ``fn(env, quick) -> Result`` under ``name`` (run in registration order)."""

    def register(fn: Callable[..., Result]) -> Callable[..., Result]:
        if name in REGISTRY:
            raise ValueError(f"bench scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, description, fn, repeats)
        return fn

    return register


def in_module_order(modules: Iterable[ModuleType]) -> list[Scenario]:
    """The registered scenarios grouped by ``modules``, in their order (within a module, in the
    order it registers them); an error names a scenario registered by a module not among them,
    so none can be left out of a run unnoticed. The order does not depend on which module was
    imported first."""
    names = [m.__name__ for m in modules]
    stray = [
        f"{sc.name} ({sc.run.__module__})"
        for sc in REGISTRY.values()
        if sc.run.__module__ not in names
    ]
    if stray:
        raise ValueError(
            f"bench scenarios registered outside the listed modules: {', '.join(stray)}"
        )
    return [sc for name in names for sc in REGISTRY.values() if sc.run.__module__ == name]
