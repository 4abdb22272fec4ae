"""Period options read like an invoice: --from and --to are both included."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from ai_chargeback_aggregator.cli.query_source import add_period_options, period_from


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_period_options(parser)
    return parser.parse_args(argv)


def test_to_is_the_last_day_included() -> None:
    period = period_from(parse("--from", "2026-11-01", "--to", "2026-11-30"))
    assert period is not None
    assert (period.start, period.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert period == period_from(parse("--month", "2026-11"))


def test_a_single_day() -> None:
    period = period_from(parse("--from", "2026-11-23", "--to", "2026-11-23"))
    assert period is not None and (period.end - period.start).days == 1


def test_to_before_from_is_an_error() -> None:
    with pytest.raises(Exception, match="before --from"):
        period_from(parse("--from", "2026-11-23", "--to", "2026-11-22"))
