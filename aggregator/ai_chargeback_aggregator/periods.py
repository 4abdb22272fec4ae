"""Billing periods: UTC days, with both ends included as on an invoice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def utc_from_ms(unix_ms: int) -> datetime:
    """A wire timestamp (milliseconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[first 00:00, day after last 00:00) in UTC: --to is inclusive for people."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
