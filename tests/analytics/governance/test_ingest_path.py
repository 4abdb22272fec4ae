"""The checks on data that came through the aggregator's real ingest path (Writer + Pricer),
delivered twice: FINAL makes every duplicate count once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from support.seed import random_events, recent_day, seeded_store

from ai_chargeback_aggregator.analytics.governance import (
    Period,
    Readiness,
    Scope,
    SharedCredentials,
)
from ai_chargeback_aggregator.analytics.reconcile import GatewayUsage

EVENTS = 400
DUPLICATES = 150


def test_priced_ingest_with_duplicate_deliveries(tmp_path: Path) -> None:
    first = recent_day(9)
    period = Period.days(first, first + timedelta(days=7))
    events = random_events(EVENTS, first=first, days=7)
    with seeded_store(tmp_path) as seed:
        assert seed.insert(events) == EVENTS
        seed.insert_again(events[:DUPLICATES])
        _, raw = seed.store.query("SELECT count() FROM chargeback.usage_events")
        assert raw[0][0] == EVENTS + DUPLICATES  # before merges, the duplicates are rows

        summary = Readiness(Scope(period=period)).run(seed.runner).extra["summary"]
        assert summary["requests"] == EVENTS
        assert summary["unattributed_requests"] == sum(1 for e in events if e.team in ("", "unattributed")) > 0
        assert summary["unpriced_requests"] == 0  # the pricer priced every catalog model at ingest
        _, exact = seed.store.query("SELECT sum(cost_total) FROM chargeback.usage_events FINAL")
        assert summary["cost"] == exact[0][0] > 0

        # The seed's consumers are used by every team: each is a shared identity.
        shared = SharedCredentials(Scope(period=period)).run(seed.runner)
        consumers = {r["identity"]: r for r in shared.rows if r["kind"] == "consumer"}
        assert set(consumers) == {"c-0001", "c-0002", "c-0003"}
        assert all(r["teams"] == 3 and r["tenants"] == 2 for r in consumers.values())
        assert sum(r["requests"] for r in consumers.values()) == EVENTS

        lines = GatewayUsage(period=period).run(seed.runner)
        assert sum(line.input_tokens for line in lines) == sum(e.input_tokens for e in events)
        assert sum(line.output_tokens for line in lines) == sum(e.output_tokens for e in events)
        assert sum(line.requests for line in lines) == EVENTS
