"""The bench's layout, asserted: one module per scenario (``bench/<scenario>.py``, each registering
at least one scenario and listed in ``bench.__main__.SCENARIO_MODULES``) beside shared modules
(environment, registry, measurement helpers, plots, report); no bench module imports one that
imports it back, none imports the runner (``bench.__main__``), no scenario module imports another
but :mod:`bench.limit` (the limit, which a scenario may measure on its own backlog).

The imports are read from the source (``import`` statements anywhere, also inside functions), so
a lazy import that would close a circle is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

import bench.__main__ as runner
from bench.registry import REGISTRY, in_module_order

BENCH = Path(runner.__file__).resolve().parent


def module_name(path: Path) -> str:
    return "bench" if path.name == "__init__.py" else f"bench.{path.stem}"


def bench_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(BENCH.glob("*.py"))}


def bench_imports(path: Path, known: set[str]) -> set[str]:
    """The bench modules ``path`` imports (absolute or relative, at any depth of the code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bench.")}
        elif isinstance(node, ast.ImportFrom):
            base = "bench" if node.level else node.module
            if node.level and node.module:
                base = f"bench.{node.module}"
            if base is None or not (base == "bench" or base.startswith("bench.")):
                continue
            if base == "bench":  # from bench import x: x is a module of the package
                found |= {f"bench.{a.name}" for a in node.names}
            else:
                found.add(base)
    return found & known


def import_graph() -> dict[str, set[str]]:
    modules = bench_modules()
    return {name: bench_imports(path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def registering_modules() -> set[str]:
    """Bench modules with a function decorated ``@scenario(...)``."""
    found = set()
    for name, path in bench_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", None) == "scenario"
                for d in node.decorator_list
            ):
                found.add(name)
    return found


SCENARIO_MODULES = [m.__name__ for m in runner.SCENARIO_MODULES]


def test_the_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_bench_import_graph_is_acyclic() -> None:
    graph = import_graph()
    # the graph is read at all: the runner imports every scenario module and the environment
    assert set(SCENARIO_MODULES) | {"bench.env", "bench.registry"} <= graph["bench.__main__"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_nothing_imports_the_runner_and_no_scenario_module_imports_another() -> None:
    graph = import_graph()
    for module, imported in graph.items():
        assert "bench.__main__" not in imported, module
        if module in SCENARIO_MODULES:
            # but the limit's pipeline (bench.limit.measure_limit), the yardstick a scenario
            # may measure on its own backlog (throughput does)
            others = imported & set(SCENARIO_MODULES) - {"bench.limit"}
            assert not others, f"{module} imports the scenario module(s) {sorted(others)}"
        elif module != "bench.__main__":
            # shared modules (env, measure, registry, plots, report…) import no scenario
            assert not imported & set(SCENARIO_MODULES), module


def test_every_scenario_module_is_listed_and_registers_a_scenario() -> None:
    # every module that registers scenarios is in the runner's list, once
    assert sorted(SCENARIO_MODULES) == sorted(registering_modules())
    assert len(set(SCENARIO_MODULES)) == len(SCENARIO_MODULES)
    for module in SCENARIO_MODULES:
        registered = [sc.name for sc in REGISTRY.values() if sc.run.__module__ == module]
        assert registered, f"{module} registers no scenario"
    # and every registered scenario of a bench module is run, in the list's order
    ordered = in_module_order(runner.SCENARIO_MODULES)
    assert {sc.name for sc in ordered} == {
        sc.name for sc in REGISTRY.values() if sc.run.__module__.startswith("bench.")
    }
    assert [sc.name for sc in ordered][:5] == [
        "limit", "throughput", "attribution", "burst_lag", "friends_bought"
    ]
