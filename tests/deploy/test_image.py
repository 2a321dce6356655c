"""The container image is right by construction (no Docker engine here): the Dockerfile's stages,
base images, user and entrypoint; the build context that .dockerignore leaves; a wheel built from
exactly that context carrying every file the services need; docker-compose.yml's pins."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from socialproof.settings import DEFAULT_PORTS
from tools.deploycheck import manifests

ROOT = manifests.ROOT
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "cmake", "git", "curl", "wget")


def stages() -> list[tuple[str, list[str]]]:
    """(FROM line, instructions) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    result: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append((line, []))
        elif result:
            result[-1][1].append(line)
    return result


def test_multi_stage_on_a_pinned_slim_base() -> None:
    found = stages()
    assert len(found) >= 2
    for from_line, _ in found:
        image = from_line.split()[1]
        assert BASE_IMAGE.match(image), f"{image}: pin python:3.11.N-slim-bookworm"
    assert found[-1][0].endswith("AS runtime")


def test_runtime_stage_has_no_build_tools_and_runs_as_non_root_socialproof() -> None:
    _, runtime = stages()[-1]
    joined = "\n".join(runtime)
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(apt-get|apk) .*install.*\b{re.escape(tool)}\b", joined), tool
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert 'ENTRYPOINT ["socialproof"]' in runtime
    # the UID the manifests run as is the image's user
    objects = manifests.kustomize_build(manifests.DEPLOY_DIR / "k8s/overlays/prod")
    uid = int(users[-1].split(":")[0])
    for obj, spec in manifests.workloads(objects):
        if any(manifests.is_socialproof(c) for c in spec["containers"]):
            assert spec["securityContext"]["runAsUser"] == uid, manifests.ref(obj)


def test_exposed_ports_are_the_service_ports() -> None:
    _, runtime = stages()[-1]
    exposed = {int(p) for line in runtime if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == set(DEFAULT_PORTS.values()) | {6066}


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used: the last match wins, ``!``
    re-includes, a pattern matching a directory covers everything under it, ``**/x`` matches x
    at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = (raw[1:] if negate else raw).rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_semantics_used_here() -> None:
    patterns = ["*", "!socialproof/", "**/__pycache__", "**/*.pyc"]
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored("tests/unit/test_x.py", patterns)
    assert not _ignored("socialproof/http.py", patterns)
    assert _ignored("socialproof/__pycache__/cli.cpython-311.pyc", patterns)


def build_context(target: Path) -> list[str]:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    kept = [p for p in tracked if (ROOT / p).is_file() and not _ignored(p, patterns)]
    for rel in kept:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    return kept


def test_build_context_is_only_what_the_image_installs(tmp_path: Path) -> None:
    kept = build_context(tmp_path)
    top = {p.split("/", 1)[0] for p in kept}
    assert top == {
        "pyproject.toml", "README.md", "socialproof", "contracts", "services", "ops", "cli"
    }
    assert "tools" not in top and "bench" not in top  # dev tools never ship
    # every COPY source of the Dockerfile exists in the context
    for _from, instructions in stages():
        for line in instructions:
            if line.startswith("COPY ") and "--from=" not in line:
                for src in line.split()[1:-1]:
                    assert (tmp_path / src).exists(), f"COPY {src}: not in the build context"


@pytest.mark.timeout(300)
def test_a_wheel_built_from_the_context_carries_schemas_and_static_files(tmp_path: Path) -> None:
    context = tmp_path / "context"
    build_context(context)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("socialproof-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(context))
        for pkg in ("socialproof", "contracts", "services", "ops", "cli")
        for p in (context / pkg).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert expected - names == set()
    assert not any(n.startswith(("tools/", "bench/", "tests/")) for n in names)
    assert any(n.startswith("contracts/schemas/") and n.endswith(".json") for n in names)
    # the Redis scripts the services load at import sit beside their modules
    assert {"services/counters/counters.lua", "services/notifier/lua/explain.lua",
            "services/notifier/lua/trending.lua", "services/social/posts_limit.lua"} <= names


def test_compose_pins_apache_kafka_in_kraft_mode_and_runs_every_process() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
    kafka = services["kafka"]
    assert re.match(r"^apache/kafka:\d+\.\d+\.\d+$", kafka["image"])
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    commands = {tuple(svc["command"]) for svc in services.values() if svc.get("build")}
    assert commands == {
        ("topics", "create"),
        ("serve", "catalog"),
        ("serve", "orders"),
        ("serve", "social"),
        ("serve", "notifier"),
        ("worker",),
    }
    for name, svc in services.items():
        if svc.get("build"):
            assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
            assert svc["environment"]["SOCIALPROOF_HOST"] == "0.0.0.0"
            # production-like group timeouts: nothing overrides the 45 s default here
            assert "SOCIALPROOF_KAFKA_SESSION_TIMEOUT_MS" not in svc["environment"]
