from __future__ import annotations

import os
from pathlib import Path

from ai_chargeback_aggregator.store.clickhouse import Store, normalize_dsn


def test_relative_embedded_paths_are_made_absolute(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert normalize_dsn("chdb://./var/chargeback") == f"chdb://{tmp_path}/var/chargeback"
    assert normalize_dsn("http://user:pw@host:8123") == "http://user:pw@host:8123"
    store = Store("chdb://./var/chargeback")  # the default the settings ship with
    try:
        assert store.migrate()
        assert (tmp_path / "var" / "chargeback").is_dir() and os.listdir(tmp_path / "var" / "chargeback")
    finally:
        store.close()
