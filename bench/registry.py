"""The scenario registry: add a benchmark by decorating a function in :mod:`bench.scenarios`.

A scenario receives a :class:`bench.env.BenchEnv` (a fresh embedded broker + Redis, helpers to
produce events and run workers) and a ``quick`` flag (tiny sizes for the test suite's smoke run),
and returns a :class:`Result`: its measured figures, the targets they are judged against, and a
one-line summary that the runner prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    summary: str
    figures: dict[str, Any]
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, bool | None]:
        return {t.describe(): t.met(self.figures) for t in self.targets}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[..., Result]


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str, description: str
) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Register ``fn(env, quick) -> Result`` under ``name`` (run in registration order)."""

    def register(fn: Callable[..., Result]) -> Callable[..., Result]:
        if name in REGISTRY:
            raise ValueError(f"bench scenario {name!r} registered twice")
        REGISTRY[name] = Scenario(name, description, fn)
        return fn

    return register
