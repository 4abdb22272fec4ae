"""`chargeback governance ...` end to end on the embedded store: output formats and CI exit codes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.store.clickhouse import Store

from .seeding import insert
from .test_attribution import clean_month, messy_month

MONTH = ["--month", "2025-03"]


def seeded(tmp_path: Path, events: list) -> str:  # type: ignore[type-arg]
    dsn = f"chdb://{tmp_path / 'store'}"
    store = Store(dsn)
    store.migrate()
    try:
        insert(store, events)
    finally:
        store.close()  # the command opens the store itself
    return dsn


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Seeded once: every command only reads, and each opens and closes the store itself."""
    yield seeded(tmp_path_factory.mktemp("messy"), messy_month())


def test_readiness_exit_codes_gate_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = seeded(tmp_path / "clean", clean_month())
    assert main(["governance", "readiness", *MONTH, "--store-dsn", clean]) == 0
    out = capsys.readouterr().out
    assert "verdict: ready for chargeback" in out
    messy = seeded(tmp_path / "messy", messy_month())
    assert main(["governance", "readiness", *MONTH, "--store-dsn", messy]) == 1
    out = capsys.readouterr().out
    assert "verdict: NOT READY FOR CHARGEBACK" in out
    assert "  - unattributed requests 11.11% (124 of 1116) > 2.00%" in out
    lenient = ["--max-unattributed-share", "0.2", "--max-unattributed-cost-share", "0.9", "--max-conflict-share", "0.1",
               "--max-unpriced-share", "off"]  # fmt: skip
    assert main(["governance", "readiness", *MONTH, "--store-dsn", messy, *lenient, "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True and payload["summary"]["unattributed_cost"] == "3.72"
    assert [row["metric"] for row in payload["sections"]["readiness"]] == [
        "requests", "unattributed_request_share", "unattributed_cost_share", "conflict_share", "estimated_cost_share",
        "unmeasured_share", "unbilled_share", "replay_conflicts",
    ]  # fmt: skip


def test_all_checks_at_once(tmp_path: Path, messy: str, capsys: pytest.CaptureFixture[str]) -> None:
    clean = seeded(tmp_path, clean_month())
    assert main(["governance", "all", *MONTH, "--store-dsn", clean]) == 0
    assert "verdict: clean" in capsys.readouterr().out
    argv = [
        "governance",
        "all",
        *MONTH,
        "--store-dsn",
        messy,
        "--format",
        "json",
        "--model",
        "claude-sonnet-4*",
        "--app",
        "checkout-svc",
    ]
    assert main(argv) == 1
    payload = json.loads(capsys.readouterr().out)
    assert list(payload["sections"]) == ["readiness", "shared_credentials", "premium_models", "cache_misses", "bursts",
                                         "retries", "fan_out", "spend_anomalies", "replay_conflicts",
                                         "quarantined_events"]  # fmt: skip
    assert payload["verdict"] == "3 of 10 checks not clean"
    assert payload["reasons"][0].startswith("readiness: not ready for chargeback (unattributed requests 11.11%")


def test_attribution_prints_every_section(messy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["governance", "attribution", *MONTH, "--store-dsn", messy, "--format", "json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert list(payload["sections"]) == ["readiness", "unattributed", "identity_conflicts", "identity_sources"]
    assert payload["sections"]["unattributed"][0]["route"] == "legacy-chat"
    assert main(["governance", "attribution", *MONTH, "--store-dsn", messy, "--format", "csv"]) == 1
    text = capsys.readouterr().out
    assert [line for line in text.splitlines() if line.startswith("# ")] == [
        "# readiness", "# unattributed", "# identity_conflicts", "# identity_sources",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        (["unattributed"], 1),
        (["conflicts"], 1),
        (["identity-sources"], 0),
        (["shared-credentials"], 0),
        (["premium", "--model", "claude-sonnet-4*"], 1),
        (["cache", "--app", "checkout-svc"], 1),
        (["bursts"], 0),
        (["retries"], 0),
        (["fan-out"], 0),
        (["anomalies", "--min-daily-cost", "0"], 0),
    ],
)
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_every_check_in_every_format(
    messy: str, capsys: pytest.CaptureFixture[str], argv: list[str], exit_code: int, fmt: str
) -> None:
    assert main(["governance", *argv, *MONTH, "--store-dsn", messy, "--format", fmt]) == exit_code
    out = capsys.readouterr().out
    if fmt == "json":
        payload = json.loads(out)
        assert payload["ok"] is (exit_code == 0)
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert rows and all(len(r) == len(rows[0]) for r in rows)
    else:
        # The table says the same verdict the JSON does, on its own line under the title.
        assert main(["governance", *argv, *MONTH, "--store-dsn", messy, "--format", "json"]) == exit_code
        expected = json.loads(capsys.readouterr().out)["verdict"]
        assert f"verdict: {expected}".lower() in [line.lower() for line in out.splitlines()[:4]], out[:400]


def test_all_lists_what_was_checked(messy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["governance", "shared-credentials", *MONTH, "--store-dsn", messy, "--all", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["sections"]["shared_credentials"]
    assert {r["identity"] for r in rows} == {"fp-checkout-svc", "c-checkout-svc", "fp-search-svc", "c-search-svc",
                                            "fp-support-bot", "c-support-bot"}  # fmt: skip
    assert not any(r["flagged"] for r in rows)


def test_bad_options_are_errors_not_findings(messy: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["governance", "bursts", *MONTH, "--store-dsn", messy, "--multiple", "0.5"]) == 2
    assert "multiple must be > 1" in capsys.readouterr().err
    assert main(["governance", "retries", "--month", "2025-3", "--store-dsn", messy]) == 2
    assert main(["governance", "retries", *MONTH, "--days", "3", "--store-dsn", messy]) == 2
    assert "use one of --month, --from/--to, --days" in capsys.readouterr().err
