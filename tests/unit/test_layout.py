"""The tree's architecture, asserted: the runtime (``socialproof/``) and the services never import
a tool (``tools/``, ``ops/``, ``cli/``, ``bench/``), services never import each other, and the
operators' tools (``ops/``) use the runtime only. ARCHITECTURE.md draws the same map.

Two checks, because each misses what the other sees: importing every module in a fresh
interpreter catches imports done at import time through any chain; reading every module's
``import`` statements (also those inside functions) catches the lazy ones."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL_PACKAGES = ("tools", "ops", "cli", "bench", "tests")
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def modules_under(package: str) -> list[str]:
    base = ROOT / package
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in base.rglob("*.py")
        if "__pycache__" not in p.parts and p.name != "__main__.py"
    )


def imported_names(package: str) -> dict[str, set[str]]:
    """module -> every absolute module name it imports, wherever the statement is."""
    found: dict[str, set[str]] = {}
    for module in modules_under(package):
        rel = Path(*module.split("."))
        path = ROOT / (rel / "__init__.py" if (ROOT / rel).is_dir() else rel.with_suffix(".py"))
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[module] = names
    return found


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def tool_modules(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in TOOL_PACKAGES}


def test_importing_the_runtime_and_every_service_loads_no_tool_module() -> None:
    # Given every module of the runtime and of each service, imported in a fresh interpreter
    modules = modules_under("socialproof") + modules_under("contracts")
    modules += [m for s in SERVICES for m in modules_under(f"services/{s}")]
    loaded = loaded_after_importing(modules)
    # Then no tool module came along
    assert {m for m in modules if m in loaded} == set(modules)
    assert tool_modules(loaded) == set()


@pytest.mark.parametrize("package", ["socialproof", "contracts", "services", "ops"])
def test_no_import_statement_of_the_runtime_services_or_ops_names_a_tool(package: str) -> None:
    offenders = {
        module: sorted(tools)
        for module, names in imported_names(package).items()
        if (tools := {n for n in tool_modules(names) if n.split(".")[0] != package})
    }
    assert offenders == {}


@pytest.mark.parametrize("package", ["socialproof", "contracts", "ops"])
def test_the_runtime_contracts_and_ops_import_no_service(package: str) -> None:
    offenders = {
        module: sorted(n for n in names if n.split(".")[0] == "services")
        for module, names in imported_names(package).items()
        if any(n.split(".")[0] == "services" for n in names)
    }
    assert offenders == {}


def test_no_service_imports_another() -> None:
    offenders = []
    for module, names in imported_names("services").items():
        parts = module.split(".")
        if len(parts) < 2:
            continue
        own = parts[1]
        for name in names:
            other = name.split(".")
            if other[0] == "services" and len(other) > 1 and other[1] != own:
                offenders.append(f"{module} imports {name}")
    assert offenders == []


def test_the_checks_see_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A module that imports a tool lazily is named by the statement check
    fake_root = tmp_path
    (fake_root / "socialproof").mkdir()
    (fake_root / "socialproof" / "__init__.py").write_text("")
    (fake_root / "socialproof" / "bad.py").write_text(
        "def f():\n    from tools.devstack import Stack\n    import services.orders.app\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    names = imported_names("socialproof")
    assert tool_modules(names["socialproof.bad"]) == {"tools.devstack"}
    assert "services.orders.app" in names["socialproof.bad"]
    assert json.dumps(sorted(names)) == '["socialproof", "socialproof.bad"]'
