from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ai_chargeback_aggregator.analytics.governance import Period, Scope
from ai_chargeback_aggregator.store.clickhouse import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated embedded store of its own; closed after the test (one chDB path per process)."""
    s = Store(f"chdb://{tmp_path / 'store'}")
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def month_scope(year: int = 2025, month: int = 3, **kwargs: object) -> Scope:
    return Scope(period=Period.month(year, month), **kwargs)  # type: ignore[arg-type]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
