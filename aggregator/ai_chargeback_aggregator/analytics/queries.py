"""The analysts' query library: the documented .sql files shipped in ``analytics/sql/``.

Each file starts with a comment header (purpose, parameters, columns) and binds
its values as ``{name:Type}`` parameters; ``chargeback sql --query NAME`` runs one.
"""

from __future__ import annotations

from importlib import resources

_SQL = resources.files(__package__).joinpath("sql")


class UnknownQuery(LookupError):
    pass


def names() -> list[str]:
    return sorted(entry.name.removesuffix(".sql") for entry in _SQL.iterdir() if entry.name.endswith(".sql"))


def text(name: str) -> str:
    entry = _SQL.joinpath(f"{name}.sql")
    if not entry.is_file():
        raise UnknownQuery(f"no shipped query named {name!r}; these exist: {', '.join(names())}")
    return entry.read_text(encoding="utf-8")
