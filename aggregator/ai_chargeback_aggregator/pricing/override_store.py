"""Price overrides in the store: save a loaded file, read them back (parameterized SQL only)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..store.clickhouse import Store
from .overrides import RATE_FIELDS, Override

TABLE = "price_overrides"
_COLUMNS = (
    "override_id", "provider", "model", "tenant", "service_tier", "effective_from", "effective_to", "kind", "currency",
    *RATE_FIELDS, "discount_percent", "note", "loaded_from", "loaded_at", "version", "is_deleted",
)  # fmt: skip
_RATE_COLUMNS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok", "reasoning_per_mtok", "per_request")

LIST_SQL = """
SELECT override_id, provider, model, tenant, service_tier, effective_from, effective_to, kind, currency,
       input_per_mtok, cached_input_per_mtok, cache_write_per_mtok, output_per_mtok, reasoning_per_mtok,
       per_request, discount_percent, note, loaded_from, version
FROM {db:Identifier}.price_overrides FINAL
ORDER BY provider, model, tenant, effective_from, override_id
"""


def list_overrides(store: Store) -> list[Override]:
    """Every live override (deleted ones are dropped by FINAL)."""
    _, rows = store.query(LIST_SQL, {"db": store.database})
    return overrides_from_rows(rows)


def overrides_from_rows(rows: Sequence[Sequence[Any]]) -> list[Override]:
    """Overrides from LIST_SQL rows (from a store or an aggregator's /v1/sql)."""
    result = []
    for row in rows:
        (override_id, provider, model, tenant, tier, start, end, kind, currency, *rest) = row
        rates = dict(zip(_RATE_COLUMNS, rest[:6]))
        discount, note, loaded_from, version = rest[6:]
        result.append(
            Override(
                override_id=override_id, provider=provider, model=model, tenant=tenant, service_tier=tier,
                effective_from=start, effective_to=end, kind=kind, currency=currency,
                discount_percent=_exact(discount), note=note, loaded_from=loaded_from, version=int(version),
                **{k: _exact(v) for k, v in rates.items()},
            )
        )
    return result


def save_overrides(store: Store, overrides: Sequence[Override], *, replace: bool = False) -> dict[str, int]:
    """Upsert by id; with replace, ids not in ``overrides`` are deleted. Returns counts."""
    version = time.time_ns()
    now = datetime.now(UTC)
    existing = {o.override_id: o for o in list_overrides(store)}
    rows: list[list[Any]] = [_row(o, now, version, deleted=False) for o in overrides]
    incoming = {o.override_id for o in overrides}
    removed = [o for oid, o in existing.items() if oid not in incoming] if replace else []
    rows += [_row(o, now, version, deleted=True) for o in removed]
    if rows:
        columns = {name: [row[i] for row in rows] for i, name in enumerate(_COLUMNS)}
        store.insert_columns(TABLE, columns)
    return {
        "added": sum(1 for oid in incoming if oid not in existing),
        "updated": sum(1 for oid in incoming if oid in existing),
        "deleted": len(removed),
    }


def _row(o: Override, now: datetime, version: int, *, deleted: bool) -> list[Any]:
    return [
        o.override_id, o.provider, o.model, o.tenant, o.service_tier, o.effective_from, o.effective_to, o.kind,
        o.currency, *(getattr(o, name) for name in RATE_FIELDS), o.discount_percent, o.note, o.loaded_from, now,
        version, 1 if deleted else 0,
    ]  # fmt: skip


def _exact(value: Decimal | None) -> Decimal | None:
    """Drop the column's padding zeros (Decimal(18, 12)): 2.500000000000 -> 2.5, 10.000 -> 10."""
    if value is None:
        return None
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()
