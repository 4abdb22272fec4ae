"""The ingest path never imports what sits after it in the data flow (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import ai_chargeback_aggregator

PACKAGE = Path(ai_chargeback_aggregator.__file__).parent
INGEST_PATH = ("ingest", "store", "pricing", "rollups")
AFTER_IT = ("analytics", "budgets", "cli", "server")


def _imported(module: Path) -> set[str]:
    """Top-level aggregator sub-packages a module imports (absolute or relative)."""
    parts = module.relative_to(PACKAGE).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[: len(parts) - node.level + 1])
                target = [*base, *(node.module or "").split(".")] if node.module else base
                names = [target] if node.module else [[*base, alias.name] for alias in node.names]
            else:
                names = [(node.module or "").split(".")]
                names = [n[1:] for n in names if n[0] == "ai_chargeback_aggregator"]
            found.update(n[0] for n in names if n and n[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name.split(".")
                if dotted[0] == "ai_chargeback_aggregator" and len(dotted) > 1:
                    found.add(dotted[1])
    return found


def test_the_ingest_path_imports_nothing_downstream() -> None:
    offenders = {
        str(module.relative_to(PACKAGE)): sorted(_imported(module) & set(AFTER_IT))
        for layer in INGEST_PATH
        for module in (PACKAGE / layer).rglob("*.py")
        if _imported(module) & set(AFTER_IT)
    }
    assert offenders == {}


def test_the_check_sees_relative_imports(tmp_path: Path) -> None:
    probe = PACKAGE / "ingest" / "writer.py"
    assert "store" in _imported(probe) and "metrics" in _imported(probe)


# The analytics packages and the budgets, as their readers may name them: a reader
# imports `analytics.reports`, never `analytics.reports.report`, so what lies behind
# a package's __init__ can be moved without touching the CLI or the console.
SURFACES = {("analytics", name) for name in ("reports", "governance", "reconcile", "statement")} | {("budgets",)}
READERS = ("cli", "console", "budgets")


def _targets(module: Path) -> set[tuple[str, ...]]:
    """Dotted aggregator paths a module imports from, relative imports resolved."""
    parts = module.relative_to(PACKAGE).parts[:-1]
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level and node.module:
            found.add((*parts[: len(parts) - node.level + 1], *node.module.split(".")))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ai_chargeback_aggregator."):
            found.add(tuple((node.module or "").split(".")[1:]))
    return found


def _behind_a_surface(target: tuple[str, ...], reader: tuple[str, ...]) -> bool:
    """A module inside a surface package, seen from outside that package."""
    for surface in SURFACES:
        inside = target[: len(surface)] == surface and len(target) > len(surface)
        if inside and reader[: len(surface)] != surface:
            return True
    return False


def test_readers_use_the_analytics_and_budgets_surfaces_only() -> None:
    offenders = {
        str(module.relative_to(PACKAGE)): sorted(".".join(t) for t in targets)
        for reader in READERS
        for module in (PACKAGE / reader).rglob("*.py")
        if (targets := {t for t in _targets(module) if _behind_a_surface(t, module.relative_to(PACKAGE).parts)})
    }
    assert offenders == {}


def test_the_surface_check_sees_a_reach_behind_it() -> None:
    assert _behind_a_surface(("analytics", "reports", "report"), ("cli", "commands", "report.py"))
    assert not _behind_a_surface(("analytics", "reports"), ("cli", "commands", "report.py"))
    assert not _behind_a_surface(("analytics", "reports", "runner"), ("analytics", "reports", "report.py"))
