"""The forecast: when a budget runs out at the period's run rate so far."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from ai_chargeback_aggregator.budgets.evaluate import Forecast

START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)  # 30 days


def test_a_budget_that_runs_out_this_period() -> None:
    f = Forecast.of(Decimal(400), Decimal(1000), START, END, datetime(2026, 11, 5, tzinfo=UTC))  # 100 a day
    assert f.exhausts_at == datetime(2026, 11, 11, tzinfo=UTC)
    assert f.projected_spend == 3000 and f.run_rate_per_day == 100
    assert f.verdict == "exhausts before the period ends"


def test_a_budget_that_holds() -> None:
    f = Forecast.of(Decimal(100), Decimal(1000), START, END, datetime(2026, 11, 16, tzinfo=UTC))
    assert f.exhausts_at is None and f.projected_spend == 200 and f.verdict == "holds this period"


def test_exhausted_or_idle_or_far_off() -> None:
    assert Forecast.of(Decimal(1000), Decimal(1000), START, END, datetime(2026, 11, 2, tzinfo=UTC)).verdict == "exhausted"
    assert Forecast.of(Decimal(0), Decimal(1000), START, END, datetime(2026, 11, 2, tzinfo=UTC)).verdict == "no spend yet"
    assert Forecast.of(Decimal(5), Decimal(1000), START, END, START).verdict == "no spend yet"  # no time elapsed
    huge = Forecast.of(Decimal(1), Decimal(10) ** 15, START, END, datetime(2026, 11, 2, tzinfo=UTC))
    assert huge.exhausts_at is None and huge.verdict == "holds this period"  # years away: no overflow


def test_after_the_period_the_rate_is_over_the_whole_period() -> None:
    f = Forecast.of(Decimal(600), Decimal(1000), START, END, datetime(2027, 1, 15, tzinfo=UTC))
    assert f.run_rate_per_day == 20 and f.projected_spend == 600 and f.exhausts_at is None
