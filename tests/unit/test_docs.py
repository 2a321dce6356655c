"""The README stays true: its quickstart is the two commands, its settings table is complete."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cli.settingstable import settings_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_quickstart_is_exactly_make_run_and_make_test() -> None:
    section = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in section.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_readme_settings_table_lists_every_setting() -> None:
    table = README.split("<!-- settings-table:start -->\n", 1)[1].split("<!-- settings-table:end -->")[0]
    assert table == settings_markdown(), "run `socialproof settings --update-readme`"
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SOCIALPROOF_SERVICE_TOKEN"):
        assert re.search(rf"^\| `{name}` \|", table, re.M)


def test_every_path_architecture_md_names_exists() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`([a-z_./-]+/[a-z_./-]*|[a-z_]+\.(?:py|md|js|lua))`", text))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    # a bare file name ("proof.py") may be short for one under a folder named just before it
    missing = [
        path
        for path in sorted(named)
        if not (root / path).exists()
        and not any(f.startswith(path) or ("/" + path) in f for f in tracked)
    ]
    assert len(named) > 30
    assert missing == []
