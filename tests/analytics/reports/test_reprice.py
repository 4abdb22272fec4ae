"""Re-rating after a price change: newer versions of the same events, idempotent, recorded, rollups rebuilt."""

from __future__ import annotations

from decimal import Decimal

import pytest
from support.seed import Seed, random_events, recent_day

from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.pricing.reprice import RepriceError, reprice


def totals(seed: Seed) -> tuple[int, int, Decimal, Decimal]:
    _, rows = seed.store.query("SELECT (SELECT count() FROM chargeback.usage_events), count(), sum(cost_total), sum(list_cost_total) "
                               "FROM chargeback.usage_events FINAL")  # fmt: skip
    return rows[0]  # type: ignore[return-value]


def test_reprice_applies_a_new_override_once_and_is_idempotent(seed: Seed) -> None:
    first, last = recent_day(3), recent_day(1)
    events = random_events(800, first=first, days=3)
    seed.insert(events)
    seed.build_rollups()
    physical, logical, cost, list_cost = totals(seed)
    before = build_report(seed.runner, first=first, last=last, by="model")

    seed.load_overrides([{"id": "openai-msa", "provider": "openai", "discount_percent": "20", "effective_from": first.isoformat()}])
    run = reprice(seed.store, first=first, last=last, reason="OpenAI MSA: 20% off from day one", pricer=seed.pricer,
                  maintainer=seed.maintainer)  # fmt: skip
    openai_events = sum(1 for e in events if e.provider == "openai")
    assert (run.status, run.events_examined, run.events_repriced) == ("done", 800, openai_events)
    assert run.cost_before == cost and run.list_cost_after == list_cost == run.list_cost_before
    assert run.cost_after < run.cost_before

    again = reprice(seed.store, first=first, last=last, reason="same prices, run again", maintainer=seed.maintainer)
    assert again.events_repriced == 0 and again.cost_after == again.cost_before == run.cost_after

    physical_after, logical_after, cost_after, _ = totals(seed)
    assert logical_after == logical == 800  # every event still counts once
    assert physical_after == physical + openai_events  # one newer version each, and only from the first run
    assert cost_after == run.cost_after

    after = build_report(seed.runner, first=first, last=last, by="model")
    assert after.sources["hours_from_raw_events"] == 0  # rollups were rebuilt, not bypassed
    for old, new in zip(before.lines, after.lines):
        assert old["key"] == new["key"] and old["events"] == new["events"]
        factor = Decimal("0.8") if new["key"].startswith(("gpt", "o3")) else Decimal(1)
        assert Decimal(new["cost_exact"]) == Decimal(old["cost_exact"]) * factor
        assert new["list_cost_exact"] == old["list_cost_exact"]

    _, runs = seed.store.query("SELECT run_id, status, reason, events_repriced FROM chargeback.reprice_runs FINAL ORDER BY started_at")
    assert [(r[1], r[2], r[3]) for r in runs] == [("done", "OpenAI MSA: 20% off from day one", openai_events),
                                                  ("done", "same prices, run again", 0)]  # fmt: skip
    _, provenance = seed.store.query("SELECT DISTINCT price_source, reprice_run_id FROM chargeback.usage_events FINAL WHERE provider = 'openai'")
    assert provenance == [("override:openai-msa", runs[0][0])]


def test_reprice_needs_a_reason(seed: Seed) -> None:
    with pytest.raises(RepriceError):
        reprice(seed.store, first=recent_day(1), last=recent_day(1), reason=" ")
