"""`chargeback budgets load|list|status`, on the store directly and through a running aggregator."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.aggregator_fixtures import free_port, make_settings
from support.seed import seeded_store, store_dsn, usage_event

from ai_chargeback_aggregator.budgets.store import list_budgets
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.server.app import Aggregator

ADMIN, SQL = "admin-secret", "sql-secret"
BUDGETS = """
budgets:
  - id: pay-monthly
    scope: {team: payments}
    period: monthly
    amount: 1000
    unit: tokens
    action: enforce
    effective_from: 2026-01-01
  - id: search-daily
    scope: {team: search}
    period: daily
    timezone: Asia/Kolkata
    amount: 50
    effective_from: 2026-01-01
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def no_running_aggregator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARGEBACK_SQL_TOKEN", raising=False)
    monkeypatch.delenv("CHARGEBACK_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("CHARGEBACK_AGGREGATOR_URL", "")
    monkeypatch.setenv("CHARGEBACK_HTTP_LISTEN", f"127.0.0.1:{free_port()}")  # where no aggregator answers


def test_load_list_status_on_the_store(tmp_path: Path, no_running_aggregator: None) -> None:
    with seeded_store(tmp_path) as seed:
        seed.insert([usage_event(datetime.now(UTC) - timedelta(minutes=2), team="payments", input_tokens=1200,
                                 cached_input_tokens=0, output_tokens=0)])  # fmt: skip
    store = ["--store-dsn", store_dsn(tmp_path)]
    file = tmp_path / "budgets.yaml"
    file.write_text(BUDGETS)
    code, out, err = run("budgets", "load", str(file), *store)
    assert code == 0, err
    assert "loaded 2 budget(s) (1 enforced)" in out and "2 added" in out

    code, out, _ = run("budgets", "list", "--format", "json", *store)
    listed = json.loads(out)["sections"]["budgets"]
    assert [row["budget_id"] for row in listed] == ["pay-monthly", "search-daily"]

    code, out, _ = run("budgets", "status", "--format", "json", *store)
    assert code == 1  # pay-monthly is over its limit
    statuses = {b["budget_id"]: b for b in json.loads(out)["budgets"]}
    assert statuses["pay-monthly"]["spend"] == "1200" and statuses["pay-monthly"]["state"] == "enforced"
    assert statuses["search-daily"]["timezone"] == "Asia/Kolkata" and statuses["search-daily"]["resets_at"].endswith("T18:30:00Z")

    code, out, _ = run("budgets", "status", "--team", "search", *store)
    assert code == 0 and "search-daily" in out and "pay-monthly" not in out
    code, out, _ = run("budgets", "status", "--team", "payments", "--format", "table", *store)
    assert "1 OF 1 AT OR OVER THE LIMIT" in out and "requests refused at the gateway" in out

    code, out, _ = run("budgets", "status", "--at", "2025-06-01T00:00:00Z", "--format", "json", *store)
    assert code == 0 and len(json.loads(out)["budgets"]) == 0  # not yet in force then

    broken = tmp_path / "broken.yaml"
    broken.write_text(BUDGETS.replace("period: daily", "period: hourly").replace("amount: 1000", "amount: -1"))
    code, _, err = run("budgets", "load", str(broken), "--replace", *store)
    assert code == 2 and "period: expected one of" in err and "amount: must be above 0" in err
    code, out, _ = run("budgets", "list", "--format", "json", *store)
    assert len(json.loads(out)["sections"]["budgets"]) == 2  # all or nothing: unchanged


def test_load_and_status_through_a_running_aggregator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_ADMIN_TOKEN", ADMIN)
    agg = Aggregator(make_settings(tmp_path, admin_token=ADMIN, sql_token=SQL))
    agg.start()
    try:
        url = f"http://127.0.0.1:{agg.http.port}"
        file = tmp_path / "budgets.yaml"
        file.write_text(BUDGETS)
        code, out, err = run("budgets", "load", str(file), "--aggregator", url)
        assert code == 0, err
        assert f"aggregator {url}" in out
        assert [b.budget_id for b in list_budgets(_runner(agg))] == ["pay-monthly", "search-daily"]

        monkeypatch.setenv("CHARGEBACK_ADMIN_TOKEN", "wrong")
        code, _, err = run("budgets", "load", str(file), "--aggregator", url)
        assert code == 2 and "401" in err

        code, out, err = run("budgets", "status", "--format", "json", "--aggregator", url, "--sql-token", SQL)
        assert code == 0, err
        assert {b["budget_id"] for b in json.loads(out)["budgets"]} == {"pay-monthly", "search-daily"}
    finally:
        agg.stop(grace_s=2)


def _runner(agg: Aggregator):  # type: ignore[no-untyped-def]
    from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner

    return LocalRunner(agg.store)
