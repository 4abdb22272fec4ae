"""Stored reconciliation runs from the CLI (migration 0022): `reconcile` stores, `reconcile runs` lists, `reconcile show` prints.

On the store the command opens itself, and through a running aggregator,
which reconciles the same bytes on its store and keeps its own result.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from support.aggregator_fixtures import make_settings

from ai_chargeback_aggregator.analytics.reconcile import load_run
from ai_chargeback_aggregator.analytics.reports import LocalRunner
from ai_chargeback_aggregator.cli.aggregator_client import AggregatorError, post
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.server.http_api import MAX_REQUEST_BYTES
from ai_chargeback_aggregator.store.clickhouse import Store

from .test_reconcile import DAYS, mini, openai_usage_page, seed, seeded_dsn, write

SQL_TOKEN = "runs-sql-token"
ADMIN_TOKEN = "runs-admin-token"


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    return seeded_dsn(tmp_path)


def out_json(capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:  # type: ignore[type-arg]
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def count_runs(dsn: str) -> int:
    store = Store(dsn)
    try:
        return int(store.query("SELECT count() FROM chargeback.reconcile_runs")[1][0][0])
    finally:
        store.close()


def test_reconcile_stores_the_run_and_show_prints_it_again(dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usage = write(tmp_path, "usage.json", openai_usage_page({DAYS[0]: [mini()], DAYS[2]: [mini()]}))
    local = ["--store-dsn", dsn, "--format", "json"]
    assert main(["reconcile", "--provider-export", str(usage), *local]) == 1
    printed, err = out_json(capsys)
    run_id = printed["run_id"]
    assert f"stored as reconciliation run {run_id}" in err

    assert main(["reconcile", "show", run_id, *local]) == 1  # the exit code is the stored verdict's
    shown, _ = out_json(capsys)
    assert shown["sections"] == printed["sections"] and shown["verdict"] == printed["verdict"] == "discrepancies"
    assert [line["status"] for line in shown["sections"]["lines"]] == ["matched", "gateway_only", "matched"]
    assert "missing bill day" in shown["sections"]["lines"][1]["detail"]
    run = shown["run"]
    assert run["via"] == "cli" and run["providers"] == ["openai"] and run["ok"] is False
    assert run["sources"] == [{"name": "usage.json", "sha256": hashlib.sha256(usage.read_bytes()).hexdigest(),
                               "bytes": usage.stat().st_size, "format": "openai-usage"}]  # fmt: skip
    assert run["gateway_cost"] == "0.0945" and run["gateway_only_lines"] == 1 and run["tolerance"]["pct"] == 1.0

    # The same file again: a new run, which names the earlier one that read the same bytes.
    assert main(["reconcile", "--provider-export", str(usage), *local]) == 1
    again = out_json(capsys)[0]["run_id"]
    assert again != run_id
    assert main(["reconcile", "show", again, *local]) == 1
    assert [s["run_id"] for s in out_json(capsys)[0]["same_files"]] == [run_id]

    assert main(["reconcile", "runs", *local]) == 0
    listed = out_json(capsys)[0]["sections"]["runs"]
    assert [r["run_id"] for r in listed] == [again, run_id]
    assert listed[0]["verdict"] == "discrepancies" and listed[0]["discrepancy_lines"] == 1
    assert main(["reconcile", "runs", "--provider", "anthropic", *local]) == 0
    assert out_json(capsys)[0]["sections"]["runs"] == []
    assert main(["reconcile", "runs", "--limit", "1", "--offset", "1", *local]) == 0
    assert [r["run_id"] for r in out_json(capsys)[0]["sections"]["runs"]] == [run_id]


def test_no_save_and_hostile_exports_store_nothing(dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usage = write(tmp_path, "usage.json", openai_usage_page({d: [mini()] for d in DAYS}))
    assert main(["reconcile", "--provider-export", str(usage), "--store-dsn", dsn, "--no-save", "--format", "json"]) == 0
    printed, err = out_json(capsys)
    assert "run_id" not in printed and "stored" not in err
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"object": "page", "data": [')
    assert main(["reconcile", "--provider-export", str(usage), "--provider-export", str(bad), "--store-dsn", dsn]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert main(["reconcile", "show", "20990101T000000Z-00000000", "--store-dsn", dsn]) == 2
    assert "no stored run" in capsys.readouterr().err
    assert main(["reconcile", "show", "'; DROP TABLE x", "--store-dsn", dsn]) == 2
    assert main(["reconcile", "--store-dsn", dsn]) == 2  # nothing to reconcile, nothing to show
    assert count_runs(dsn) == 0


def test_through_a_running_aggregator_it_stores_its_own_result(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("CHARGEBACK_ADMIN_TOKEN", raising=False)
    agg = Aggregator(make_settings(tmp_path, sql_token=SQL_TOKEN, admin_token=ADMIN_TOKEN))
    agg.start()
    try:
        seed(agg.store)
        base = f"http://127.0.0.1:{agg.http.port}"
        remote = ["--aggregator", base, "--sql-token", SQL_TOKEN, "--format", "json"]
        usage = write(tmp_path, "usage.json", openai_usage_page({d: [mini()] for d in DAYS}))

        # No admin token: printed, said not stored; --save makes that an error.
        assert main(["reconcile", "--provider-export", str(usage), *remote]) == 0
        printed, err = out_json(capsys)
        assert "run_id" not in printed and "not stored" in err
        assert main(["reconcile", "--provider-export", str(usage), "--save", *remote]) == 2
        assert "admin token" in capsys.readouterr().err
        runner = LocalRunner(agg.store)
        assert main(["reconcile", "runs", *remote]) == 0 and out_json(capsys)[0]["sections"]["runs"] == []

        assert main(["reconcile", "--provider-export", str(usage), "--admin-token", ADMIN_TOKEN, *remote]) == 0
        stored, err = out_json(capsys)
        found = load_run(runner, stored["run_id"])
        assert found is not None and found[0].via == "api" and "stored as" in err
        assert [line["status"] for line in stored["sections"]["lines"]] == ["matched"] * 3
        assert main(["reconcile", "show", stored["run_id"], *remote]) == 0
        assert out_json(capsys)[0]["sections"] == stored["sections"]

        # The endpoint itself: the token is required, and a malformed export stores nothing.
        body = {"files": [{"name": "x.json", "data": base64.b64encode(b"{nope").decode()}]}
        with pytest.raises(AggregatorError, match="401"):
            post(base, "/v1/reconcile-runs", "wrong", body)
        with pytest.raises(AggregatorError, match="400.*unrecognized provider export"):
            post(base, "/v1/reconcile-runs", ADMIN_TOKEN, body)
        with pytest.raises(AggregatorError, match="400.*base64"):
            post(base, "/v1/reconcile-runs", ADMIN_TOKEN, {"files": [{"name": "x.json", "data": "!!"}]})
        # An export over what the HTTP API reads: said before sending, with where it can go instead.
        large = write(tmp_path, "large.json", openai_usage_page({d: [mini()] * 6000 for d in DAYS}))
        assert large.stat().st_size > MAX_REQUEST_BYTES
        assert main(["reconcile", "--provider-export", str(large), "--admin-token", ADMIN_TOKEN, *remote]) == 2
        assert "Reconciliation page" in capsys.readouterr().err
        assert main(["reconcile", "runs", *remote]) == 0
        assert [r["run_id"] for r in out_json(capsys)[0]["sections"]["runs"]] == [stored["run_id"]]
    finally:
        agg.stop(grace_s=2)
