"""Budget files: every field, every default, and every way to get one wrong (all problems at once)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ai_chargeback_aggregator.budgets.definitions import BudgetError, Scope, parse_records, read_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "budgets.example.yaml"


def one(**fields: object) -> dict[str, object]:
    record: dict[str, object] = {"id": "b1", "scope": {"team": "payments"}, "period": "monthly", "amount": 100,
                                 "effective_from": "2026-11-01"}  # fmt: skip
    record.update(fields)
    return record


def problems(*records: object) -> list[str]:
    with pytest.raises(BudgetError) as caught:
        parse_records(list(records))
    return caught.value.problems


def test_defaults_are_utc_usd_chargeback_alert_at_50_80_100() -> None:
    (budget,) = parse_records([one()])
    assert budget.timezone == "UTC" and budget.unit == "usd" and budget.cost_basis == "chargeback"
    assert budget.thresholds == (Decimal(50), Decimal(80), Decimal(100))
    assert budget.action == "alert" and not budget.enforced and budget.notify == ()
    assert budget.scope == Scope(team="payments") and budget.effective_to is None


def test_every_field_is_read() -> None:
    (budget,) = parse_records([one(
        scope={"tenant": "acme", "team": "payments", "model": "GPT-4o", "provider": "OpenAI"}, period="weekly",
        timezone="Europe/Berlin", amount="2500.50", unit="usd", cost_basis="showback", thresholds=[90, 25.5, 100],
        action="enforce", notify=["payments-slack", "finance"], effective_to="2027-01-01", note="FY27",
    )])  # fmt: skip
    assert budget.scope == Scope(tenant="acme", team="payments", provider="openai", model="gpt-4o")
    assert budget.scope.text() == "tenant=acme, team=payments, provider=openai, model=gpt-4o"
    assert budget.thresholds == (Decimal("25.5"), Decimal(90), Decimal(100))
    assert budget.amount == Decimal("2500.50") and budget.cost_basis == "showback" and budget.enforced
    assert budget.notify == ("payments-slack", "finance") and budget.effective_to == date(2027, 1, 1)


def test_tokens_have_no_cost_basis_and_whole_amounts() -> None:
    (budget,) = parse_records([one(unit="tokens", amount=5_000_000)])
    assert budget.cost_basis == "" and budget.amount == 5_000_000
    assert any("cost_basis: only for usd" in p for p in problems(one(unit="tokens", cost_basis="showback")))
    assert any("whole number of tokens" in p for p in problems(one(unit="tokens", amount="10.5")))


@pytest.mark.parametrize(("fields", "expected"), [
    ({"id": ""}, "id: required"),
    ({"id": "has space"}, "id: required"),
    ({"period": "hourly"}, "period: expected one of daily, weekly, monthly"),
    ({"period": None}, "period: required"),
    ({"timezone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
    ({"timezone": "../../etc/passwd"}, "not an IANA time zone"),
    ({"amount": 0}, "amount: must be above 0"),
    ({"amount": -5}, "amount: must be above 0"),
    ({"amount": "ten"}, "amount: not a number"),
    ({"amount": True}, "amount: not a number"),
    ({"amount": "1e400"}, "amount: must be above 0 and at most"),
    ({"amount": "NaN"}, "amount: not a finite number"),
    ({"amount": "0.0000000001"}, "amount: at most 9 decimals"),
    ({"amount": None}, "amount: required"),
    ({"unit": "eur"}, "unit: expected one of usd, tokens"),
    ({"action": "block"}, "action: expected one of alert, enforce"),
    ({"cost_basis": "list"}, "cost_basis: expected one of chargeback, showback"),
    ({"thresholds": []}, "thresholds: a non-empty list"),
    ({"thresholds": "80"}, "thresholds: a non-empty list"),
    ({"thresholds": [50, 50]}, "a percent appears twice"),
    ({"thresholds": [0]}, "each above 0"),
    ({"thresholds": [1001]}, "at most 1000 percent"),
    ({"scope": None}, "scope: required"),
    ({"scope": {"model": "gpt-4o"}}, "scope: name an owner"),
    ({"scope": {"team": "unattributed"}}, "budgets name an owner"),
    ({"scope": {"team": ""}}, "budgets name an owner"),
    ({"scope": {"team": ["a", "b"]}}, "scope.team: a single value"),
    ({"scope": {"squad": "x"}}, "scope: unknown dimension(s) squad"),
    ({"scope": {"team": "x" * 300}}, "at most 256 characters"),
    ({"effective_from": None}, "effective_from: required"),
    ({"effective_from": "2026-13-01"}, "effective_from: not a date"),
    ({"effective_from": datetime(2026, 11, 1, tzinfo=UTC)}, "a date (YYYY-MM-DD), not a time"),
    ({"effective_to": "2026-11-01"}, "effective_to: must be after effective_from"),
    ({"notify": ["bad name!"]}, "notify: webhook names"),
    ({"note": 5}, "note: text"),
    ({"colour": "red"}, "unknown field(s) colour"),
])  # fmt: skip
def test_a_wrong_field_is_named(fields: dict[str, object], expected: str) -> None:
    found = problems(one(**fields))
    assert any(expected in p for p in found), found
    assert all(p.startswith("entry 1 (") for p in found)


def test_every_problem_of_every_entry_is_reported_and_nothing_is_returned() -> None:
    found = problems(one(id="a", period="hourly", amount=-1), one(id="a"), "not a mapping", one(id="ok"))
    assert any(p.startswith("entry 1 (a): period") for p in found)
    assert any(p.startswith("entry 1 (a): amount") for p in found)
    assert any("entry 2 (a): id: 'a' appears twice" in p for p in found)
    assert "entry 3: not a mapping" in found
    assert not any(p.startswith("entry 4") for p in found)


def test_overlapping_budgets_are_allowed_each_stands_alone() -> None:
    budgets = parse_records([one(id="soft", action="alert", amount=800), one(id="hard", action="enforce", amount=1000),
                             one(id="daily", period="daily", amount=60)])  # fmt: skip
    assert [b.budget_id for b in budgets] == ["soft", "hard", "daily"]


def test_effective_dates_are_local_dates_of_the_budget_zone() -> None:
    (budget,) = parse_records([one(timezone="Asia/Tokyo", effective_from="2026-12-01", effective_to="2027-01-01")])
    assert not budget.in_force(datetime(2026, 11, 30, 14, 59, tzinfo=UTC))  # 23:59 on Nov 30 in Tokyo
    assert budget.in_force(datetime(2026, 11, 30, 15, 0, tzinfo=UTC))  # Dec 1, 00:00 in Tokyo
    assert budget.in_force(datetime(2026, 12, 31, 14, 59, tzinfo=UTC))
    assert not budget.in_force(datetime(2026, 12, 31, 15, 0, tzinfo=UTC))  # Jan 1 in Tokyo: effective_to is exclusive


def test_files(tmp_path: Path) -> None:
    listed = tmp_path / "b.yaml"
    listed.write_text("- id: a\n  scope: {team: x}\n  period: daily\n  amount: 5\n  effective_from: 2026-01-01\n")
    assert [b.budget_id for b in read_file(listed)] == ["a"]
    mapped = tmp_path / "m.yml"
    mapped.write_text("budgets:\n  - id: a\n    scope: {team: x}\n    period: daily\n    amount: 5\n    effective_from: 2026-01-01\n")
    assert read_file(mapped)[0].loaded_from == str(mapped)
    assert read_file(tmp_path / "m.yml")[0].effective_from == date(2026, 1, 1)
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    assert read_file(empty) == []
    for name, text, expected in [
        ("broken.yaml", "budgets: [", "not valid YAML"),
        ("scalar.yaml", "42", "expected a list of budgets"),
        ("extra.yaml", "budgets: []\nprices: []\n", "unknown top-level key(s) prices"),
        ("b.json", "[]", "expected a .yaml or .yml file"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(BudgetError, match=re.escape(expected)):
            read_file(path)


def test_the_documented_example_file_is_valid() -> None:
    budgets = read_file(EXAMPLE)
    assert len(budgets) >= 4
    assert {b.unit for b in budgets} == {"usd", "tokens"}
    assert {b.action for b in budgets} == {"alert", "enforce"}
    assert any(b.timezone != "UTC" for b in budgets)


def test_webhooks_are_settings_from_a_variable_or_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from ai_chargeback_aggregator.budgets.webhooks import targets_from
    from ai_chargeback_aggregator.secret_env import SECRET_FIELDS
    from ai_chargeback_aggregator.settings import AggregatorSettings

    hooks = '{"finance": {"url": "https://hooks.example/b", "token": "t0k"}, "pay": {"url": "https://hooks.slack.com/x", "format": "slack"}}'
    monkeypatch.setenv("CHARGEBACK_BUDGET_WEBHOOKS", hooks)
    targets = targets_from(AggregatorSettings().budget_webhooks)
    assert (targets["finance"].url, targets["finance"].token, targets["pay"].format) == ("https://hooks.example/b", "t0k", "slack")
    assert "hooks.slack.com" not in repr(AggregatorSettings())  # URLs are credentials: never printed
    monkeypatch.delenv("CHARGEBACK_BUDGET_WEBHOOKS")
    file = tmp_path / "hooks.json"
    file.write_text(hooks + "\n")
    monkeypatch.setenv("CHARGEBACK_BUDGET_WEBHOOKS_FILE", str(file))
    assert set(AggregatorSettings().budget_webhooks) == {"finance", "pay"}
    assert "budget_webhooks" in SECRET_FIELDS  # scrubbed from the environment once read (`chargeback serve`)
    for bad in ('{"a b": {"url": "https://x"}}', '{"x": {"url": "ftp://x"}}', '{"x": {"url": "https://x", "format": "teams"}}'):
        file.write_text(bad)
        with pytest.raises(ValidationError):
            AggregatorSettings()
