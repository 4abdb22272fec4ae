"""The pricer keys a flush's events by their start in milliseconds (no datetime per event,
issue 20): each event must get exactly the price its moment resolves to, across days, across
a time-of-day model's half-hour slots and across token tiers. The rollups' dirty hours come
from the same milliseconds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.pricing.rates import PRICE_COLUMNS, Price
from ai_chargeback_aggregator.rollups.maintainer import touched_hours

MIDNIGHT = datetime(2026, 11, 30, tzinfo=UTC)
KEYS = [("deepseek", "deepseek-chat"), ("google", "gemini-2.5-pro"), ("openai", "gpt-4o-mini"), ("nobody", "no-model")]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_every_event_gets_the_price_its_moment_resolves_to() -> None:
    pricer = Pricer()
    pricer.load_catalog()
    moments = [MIDNIGHT + timedelta(days=d, minutes=m, milliseconds=x)
               for d in (0, 1) for m in (0, 29, 30, 16 * 60 + 29, 16 * 60 + 30, 23 * 60 + 59) for x in (-1, 0, 999)]  # fmt: skip
    rows = [(provider, model, moment, tokens) for provider, model in KEYS for moment in moments for tokens in (10, 250_000)]
    columns = {
        "provider": [r[0] for r in rows], "served_model": [r[1] for r in rows], "requested_model": [""] * len(rows),
        "service_tier": [""] * len(rows), "tenant": ["acme"] * len(rows), "started_ms": [ms(r[2]) for r in rows],
        "input_tokens": [r[3] for r in rows], "policy_outcome": ["allowed"] * len(rows),
    }  # fmt: skip
    prices = pricer.enrich(columns)
    assert len(prices) == len(rows)
    for price, (provider, model, moment, tokens) in zip(prices, rows):
        assert price == pricer.schedule(provider, model, "", "acme", moment.date()).pick(moment, tokens), (provider, model, moment)
    # The cases are not all one price: days, slots and tiers differ somewhere.
    assert len(set(prices)) >= 5


def test_a_price_is_exactly_the_table_columns_the_pricer_fills() -> None:
    """The embedded insert names the extra columns after the Price's fields; reprice, after PRICE_COLUMNS."""
    assert [f.name for f in dataclasses.fields(Price)] == list(PRICE_COLUMNS)


def test_touched_hours_from_milliseconds() -> None:
    at = lambda h, m=0: ms(MIDNIGHT + timedelta(hours=h, minutes=m))  # noqa: E731
    hour = lambda h: MIDNIGHT + timedelta(hours=h)  # noqa: E731
    assert touched_hours([]) == set()
    assert touched_hours([at(5, 59) + 59_999]) == {hour(5)}
    assert touched_hours([at(1, 10), at(3, 50), at(2)]) == {hour(1), hour(2), hour(3)}  # contiguous: every hour between
    assert touched_hours([at(-1, 30), at(0)]) == {hour(-1), hour(0)}  # across midnight
    spread = [at(0, 5), at(30), at(30, 40), at(72)]  # a replay spanning days: exactly the hours seen
    assert touched_hours(spread) == {hour(0), hour(30), hour(72)}
