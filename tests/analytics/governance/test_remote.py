"""While an aggregator holds the embedded store, the commands read through its POST /v1/sql."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.aggregator_fixtures import make_settings

from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.server.app import Aggregator

from .test_reconcile import DAYS, mini, openai_usage_page, seed, write

TOKEN = "governance-test-token"


def test_governance_and_reconcile_through_a_running_aggregator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agg = Aggregator(make_settings(tmp_path, sql_token=TOKEN))
    agg.start()
    try:
        seed(agg.store)
        remote = ["--aggregator", f"http://127.0.0.1:{agg.http.port}", "--sql-token", TOKEN, "--format", "json"]
        assert main(["governance", "readiness", "--month", "2025-03", *remote]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["summary"]["requests"] == 3 * 150 + 5
        assert payload["summary"]["cost"] == "3.0195"  # 3 x ($0.0315 + $0.975), exact over the wire
        usage = write(tmp_path, "usage.json", openai_usage_page({d: [mini()] for d in DAYS}))
        assert main(["reconcile", "--provider-export", str(usage), *remote]) == 0
        assert [line["status"] for line in json.loads(capsys.readouterr().out)["sections"]["lines"]] == ["matched"] * 3
        assert main(["governance", "bursts", "--month", "2025-03", *remote[:3], "wrong", "--format", "json"]) == 2
        assert "401" in capsys.readouterr().err
    finally:
        agg.stop(grace_s=2)
