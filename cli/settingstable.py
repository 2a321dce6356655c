"""``socialproof settings``: every setting with its variable, default, owner and meaning (README's
settings table is generated from it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import out


def settings_table(
    as_markdown: Annotated[bool, typer.Option("--markdown")] = False,
    readme: Annotated[bool, typer.Option("--update-readme", help="rewrite README's table")] = False,
) -> None:
    """Every setting: environment variable, default, meaning."""
    if readme:
        out.print("README.md updated" if update_readme() else "README.md already up to date")
        return
    rows = settings_rows()
    if as_markdown:
        print(settings_markdown(), end="")
        return
    table = Table(title="settings")
    for col in ("variable", "default", "used by", "meaning"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    out.print(table)


def settings_markdown() -> str:
    """The settings table as markdown (README's "Settings" section is generated from it)."""
    lines = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r[0]}` | `{r[1]}` | {r[2]} | {r[3]} |" for r in settings_rows()]
    return "\n".join(lines) + "\n"


def update_readme(path: Path = Path(__file__).resolve().parent.parent / "README.md") -> bool:
    """Rewrite the README's settings table; returns True when it changed."""
    text = path.read_text()
    start, end = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    new = head + start + settings_markdown() + end + tail
    if new != text:
        path.write_text(new)
    return new != text


def settings_rows() -> list[tuple[str, str, str, str]]:
    from pydantic import AliasChoices

    from services.catalog.settings import CatalogSettings
    from services.counters.settings import CountersSettings
    from services.notifier.settings import NotifierSettings
    from services.orders.settings import OrdersSettings
    from services.social.settings import SocialSettings
    from socialproof import settings as s
    from tools.devstack import DevStackSettings

    owners = {
        s.Settings: "all",
        s.PrivacyDefaults: "social, worker, notifier",
        CatalogSettings: "catalog",
        OrdersSettings: "orders",
        SocialSettings: "social",
        CountersSettings: "worker",
        NotifierSettings: "notifier",
        DevStackSettings: "make run",
    }
    rows: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    for cls, owner in owners.items():
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                var = str(alias.choices[0])
            else:
                var = f"SOCIALPROOF_{name.upper()}"
            if var in seen:
                continue
            seen.add(var)
            default = info.default
            if default is None:
                shown = "(unset)"
            elif hasattr(default, "get_secret_value"):
                shown = "(secret)"
            elif default == "":
                shown = "(empty)"
            else:
                shown = str(default)
            rows.append((var, shown, owner, info.description or ""))
    return rows
