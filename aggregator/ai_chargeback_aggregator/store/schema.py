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

MIGRATIONS_PACKAGE = "ai_chargeback_aggregator.store.migrations"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Only these names are placeholders, so SQL may still use braces (macros, maps).
_PLACEHOLDER = re.compile(r"\{(db|local|on_cluster|replicated)\}")
_COMMENT = re.compile(r"--[^\n]*")
# ALTERs of a shard table that change columns are mirrored onto its Distributed
# table; those that touch what a Distributed table does not have (indexes,
# projections, TTL, settings, sort key) are not.
_SHARD_ALTER = re.compile(r"^ALTER\s+TABLE\s+\{db\}\.(\w+)\{local\}\s", re.IGNORECASE)
_NOT_ON_DISTRIBUTED = re.compile(r"\b(INDEX|PROJECTION|TTL|SETTING|ORDER\s+BY|CONSTRAINT)\b", re.IGNORECASE)
_DISTRIBUTED = re.compile(r"^--\s*@distributed\s+(\w+)\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    source: str

    def render(self, *, database: str, cluster: str = "", distributed_tables: frozenset[str] | None = None) -> list[str]:
        """DDL statements for this migration, in order.

        In cluster mode a column added to a shard table (``ALTER TABLE {db}.T{local}
        ADD COLUMN ...``) is added to the Distributed table ``T`` in front of it too,
        so migrations state each column change once. `distributed_tables` names the
        tables that have one (every migration's ``@distributed`` lines; see
        ``distributed_tables_of``); by default, this migration's own.
        """
        values = {
            "db": f"`{database}`",
            "local": "_local" if cluster else "",
            "on_cluster": f"ON CLUSTER `{cluster}`" if cluster else "",
            "replicated": "Replicated" if cluster else "",
        }
        # Comments go first: they may hold ";" (migration SQL keeps "--" out of strings).
        body = _COMMENT.sub("", self.source)
        statements = [part.strip() for part in body.split(";")]
        rendered = []
        fronted = distributed_tables if distributed_tables is not None else distributed_tables_of([self])
        for statement in filter(None, statements):
            rendered.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], statement))
            shard = _SHARD_ALTER.match(statement)
            column_only = shard is not None and "COLUMN" in statement.upper() and not _NOT_ON_DISTRIBUTED.search(statement)
            if cluster and column_only and shard.group(1) in fronted:  # type: ignore[union-attr]
                rendered.append(_PLACEHOLDER.sub(lambda m: "" if m.group(1) == "local" else values[m.group(1)], statement))
        if cluster:
            for table, sharding_key in _DISTRIBUTED.findall(self.source):
                rendered.append(
                    f"CREATE TABLE IF NOT EXISTS `{database}`.{table} ON CLUSTER `{cluster}` "
                    f"AS `{database}`.{table}_local "
                    f"ENGINE = Distributed(`{cluster}`, `{database}`, {table}_local, {sharding_key})"
                )
        return rendered


def distributed_tables_of(migrations: list[Migration]) -> frozenset[str]:
    return frozenset(table for m in migrations for table, _ in _DISTRIBUTED.findall(m.source))


def load_migrations() -> list[Migration]:
    """All migrations shipped with the package, by version; a version used twice is an error.

    Versions may leave gaps: work in parallel takes numbers from assigned ranges
    (0010-0019, ...), and a store applies every version it has not recorded, in order.
    """
    found: list[Migration] = []
    for entry in resources.files(MIGRATIONS_PACKAGE).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for previous, migration in zip(found, found[1:]):
        if migration.version == previous.version:
            raise RuntimeError(f"migration version {migration.version:04d} used twice: {previous.name}, {migration.name}")
    if found and found[0].version != 1:
        raise RuntimeError(f"migrations must start at 0001, not {found[0].version:04d}")
    return found
