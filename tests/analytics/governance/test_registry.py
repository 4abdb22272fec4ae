"""The governance registry drives the CLI: a check listed there is a subcommand with its options,
and the defaults its help shows are the check's own."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ai_chargeback_aggregator.analytics.governance import GOVERNANCE_CHECKS, TABLE_COLUMNS, CheckSpec, Option
from ai_chargeback_aggregator.analytics.governance.base import CheckResult, Runner, Scope, Verdict
from ai_chargeback_aggregator.analytics.governance.shared_credentials import DEFAULT_MAX_CLIENT_IPS
from ai_chargeback_aggregator.cli.commands import governance as governance_cli
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.store.clickhouse import Store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    governance_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_every_option_sets_a_field_of_the_dataclass_holding_its_default() -> None:
    for spec in GOVERNANCE_CHECKS:
        names = {f.name for f in dataclasses.fields(spec.defaults_owner)}
        for option in spec.options:
            assert option.param in names, f"{spec.command} {option.flag} sets {option.param}, not a field of {spec.defaults_owner}"
        assert spec.key in TABLE_COLUMNS


def test_commands_and_flags_are_unique() -> None:
    commands = [spec.command for spec in GOVERNANCE_CHECKS]
    assert len(commands) == len(set(commands)) and "all" not in commands
    for spec in GOVERNANCE_CHECKS:
        flags = [option.flag for option in spec.options]
        assert len(flags) == len(set(flags)), spec.command


def test_help_shows_the_checks_own_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["governance", "shared-credentials", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"flag above this many client IPs (default {DEFAULT_MAX_CLIENT_IPS})" in help_text
    with pytest.raises(SystemExit):
        _parser().parse_args(["governance", "readiness", "--help"])
    assert "or 'off' (default off)" in " ".join(capsys.readouterr().out.split())  # max_header_team_share is off by default


@dataclass(frozen=True, slots=True)
class _Probe:
    """A check added only to the registry: it must reach the CLI with no other change."""

    scope: Scope
    threshold: int = 7
    only_flagged: bool = True
    NAME: ClassVar[str] = "probe"

    def run(self, runner: Runner) -> CheckResult:
        row = {"threshold": self.threshold, "only_flagged": self.only_flagged}
        return CheckResult(check=self.NAME, title="Probe", columns=("threshold", "only_flagged"), rows=(row,),
                           verdict=Verdict(ok=self.threshold < 10, label="probe"))  # fmt: skip


def test_a_check_added_to_the_registry_becomes_a_subcommand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = CheckSpec("probe", "a probe check", _Probe, ("threshold", "only_flagged"),
                      (Option("--threshold", "threshold", "a number", int),), listing=True)  # fmt: skip
    monkeypatch.setattr(governance_cli, "GOVERNANCE_CHECKS", (*GOVERNANCE_CHECKS, probe))
    monkeypatch.setattr(governance_cli, "TABLE_COLUMNS", {**TABLE_COLUMNS, "probe": probe.columns})
    dsn = f"chdb://{tmp_path / 'store'}"
    store = Store(dsn)
    store.migrate()
    store.close()
    assert main(["governance", "probe", "--days", "1", "--store-dsn", dsn, "--format", "json"]) == 0
    assert '"threshold": 7' in capsys.readouterr().out
    assert main(["governance", "probe", "--days", "1", "--store-dsn", dsn, "--threshold", "12", "--all", "--format", "json"]) == 1
    out: Any = capsys.readouterr().out
    assert '"threshold": 12' in out and '"only_flagged": false' in out
    # `all` runs it too, with its option
    assert main(["governance", "all", "--days", "1", "--store-dsn", dsn, "--threshold", "12", "--format", "json"]) == 1
    assert '"probe: probe' in capsys.readouterr().out
