"""Numbered schema migrations: one SQL source renders both single-node and cluster DDL.

Each ``migrations/NNNN_name.sql`` file holds statements separated by ``;`` with
placeholders filled at render time:

``{db}``          the database
``{local}``       ``""`` single-node; ``"_local"`` in cluster mode (the shard tables)
``{on_cluster}``  ``""`` or ``ON CLUSTER `name```
``{replicated}``  ``""`` or ``"Replicated"`` (engine prefix; replica path from server defaults)

A line ``-- @distributed <table> <sharding_key>`` adds, in cluster mode only, a
Distributed table ``<table>`` in front of ``<table>_local``. Single-node mode has
no Distributed table: queries use the same names in both modes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

MIGRATIONS_PACKAGE = "kong_ai_chargeback.aggregator.migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Only these names are placeholders, so SQL may still use braces (macros, maps).
_PLACEHOLDER = re.compile(r"\{(db|local|on_cluster|replicated)\}")
_COMMENT = re.compile(r"--[^\n]*")
_DISTRIBUTED = re.compile(r"^--\s*@distributed\s+(\w+)\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    source: str

    def render(self, *, database: str, cluster: str = "") -> list[str]:
        """DDL statements for this migration, in order."""
        values = {
            "db": f"`{database}`",
            "local": "_local" if cluster else "",
            "on_cluster": f"ON CLUSTER `{cluster}`" if cluster else "",
            "replicated": "Replicated" if cluster else "",
        }
        # Comments go first: they may hold ";" (migration SQL keeps "--" out of strings).
        body = _COMMENT.sub("", self.source)
        statements = [part.strip() for part in body.split(";")]
        rendered = [_PLACEHOLDER.sub(lambda m: values[m.group(1)], s) for s in statements if s]
        if cluster:
            for table, sharding_key in _DISTRIBUTED.findall(self.source):
                rendered.append(
                    f"CREATE TABLE IF NOT EXISTS `{database}`.{table} ON CLUSTER `{cluster}` "
                    f"AS `{database}`.{table}_local "
                    f"ENGINE = Distributed(`{cluster}`, `{database}`, {table}_local, {sharding_key})"
                )
        return rendered


def load_migrations() -> list[Migration]:
    """All migrations shipped with the package, by version; gaps and duplicates are errors."""
    found: list[Migration] = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration numbering broken at {migration.version:04d}_{migration.name}: expected {expected:04d}")
    return found
