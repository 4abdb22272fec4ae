"""Spend anomalies: one spike day against a steady trailing baseline."""

from __future__ import annotations

import statistics
from datetime import date, timedelta
from decimal import Decimal

from ai_chargeback_aggregator.analytics.governance import SpendAnomalies
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters
from ai_chargeback_aggregator.store.clickhouse import Store

from .conftest import month_scope
from .seeding import SONNET, at, consumer, event, every, insert

# Per request: 10000 x $3 + 1000 x $15 per 1M = $0.045.
PER_REQUEST = Decimal("0.045")
# 100 requests a day, +-10 by weekday, so the baseline has a spread (MAD > 0).
DAILY = [100, 110, 90, 105, 95, 100, 110, 90, 105, 95, 100, 110, 90, 105, 95, 100, 110, 90, 105, 95, 100, 110, 90, 105, 95, 100, 110, 90, 105, 95, 100]
SPIKE_DAY = 20  # 2025-03-21
SPIKE_REQUESTS = 800


def seed(store: Store) -> None:
    events = []
    for day, count in enumerate(DAILY):
        count = SPIKE_REQUESTS if day == SPIKE_DAY else count
        start = at("2025-03-01", 6) + timedelta(days=day)
        events += [event(w, **consumer("support-bot", "support"), **SONNET, input_tokens=10_000, output_tokens=1_000)
                   for w in every(start, count, timedelta(seconds=45))]  # fmt: skip
        # A second app whose steady spend must never flag.
        events += [event(w, **consumer("faq-bot", "support"), **SONNET, input_tokens=10_000, output_tokens=1_000)
                   for w in every(start, 50, timedelta(seconds=60))]  # fmt: skip
    insert(store, events)


def test_renders_bound_parameters() -> None:
    sql, params = SpendAnomalies(month_scope()).render()
    assert set(params) == sql_parameters(sql)
    assert (params["baseline_days"], params["min_factor"], params["min_robust_z"]) == (14, 3.0, 3.5)


def test_spike_day_is_flagged_with_its_factor(store: Store) -> None:
    seed(store)
    result = SpendAnomalies(month_scope()).run(store)
    assert not result.verdict.ok
    assert len(result.rows) == 1
    spike = result.rows[0]
    assert (spike["app"], spike["day"]) == ("support-bot", date(2025, 3, 21))
    assert spike["cost"] == SPIKE_REQUESTS * PER_REQUEST == Decimal(36)
    history = [float(n * PER_REQUEST) for n in DAILY[SPIKE_DAY - 14 : SPIKE_DAY]]
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    assert spike["baseline_days"] == 14
    assert abs(spike["baseline_median"] - median) < 1e-9 and abs(spike["baseline_mad"] - mad) < 1e-9
    assert abs(spike["factor"] - 36 / median) < 1e-9  # 8x
    assert abs(spike["robust_z"] - 0.6745 * (36 - median) / mad) < 1e-6
    assert spike["reasons"] == ["cost 36 = 8x median 4.5, robust z 94.4"]


def test_the_day_after_the_spike_is_not_an_anomaly_and_early_days_have_no_baseline(store: Store) -> None:
    seed(store)
    rows = {(r["app"], r["day"]): r for r in SpendAnomalies(month_scope(), only_flagged=False).run(store).rows}
    after = rows[("support-bot", date(2025, 3, 22))]
    assert after["flagged"] == 0 and after["baseline_days"] == 14
    first = rows[("support-bot", date(2025, 3, 1))]
    assert first["baseline_days"] == 0 and first["factor"] is None and first["flagged"] == 0
    assert not any(r["flagged"] for (app, _), r in rows.items() if app == "faq-bot")


def test_thresholds_are_configurable(store: Store) -> None:
    seed(store)
    assert SpendAnomalies(month_scope(), min_factor=10).run(store).rows == ()
    assert SpendAnomalies(month_scope(), min_daily_cost_usd=50).run(store).rows == ()
