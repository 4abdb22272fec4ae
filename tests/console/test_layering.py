"""The console sits at the end of the data flow: it reads analytics' public names, and nothing upstream imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import ai_chargeback_aggregator

PACKAGE = Path(ai_chargeback_aggregator.__file__).parent


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module as written, relative dots resolved against the package; imported names) of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = list(parts[: len(parts) - node.level]) if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            found.append((module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


def test_the_console_uses_analytics_public_names_only() -> None:
    checked = 0
    for path in (PACKAGE / "console").rglob("*.py"):
        for module, names in imports(path):
            if module.startswith("ai_chargeback_aggregator.analytics"):
                checked += 1
                private = [n for n in names if n.startswith("_")] + [p for p in module.split(".") if p.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {module}"
    assert checked > 5


def test_nothing_upstream_imports_the_console() -> None:
    for layer in ("ingest", "store", "pricing", "rollups", "analytics"):
        for path in (PACKAGE / layer).rglob("*.py"):
            for module, _ in imports(path):
                assert not module.startswith("ai_chargeback_aggregator.console"), f"{path} imports {module}"
