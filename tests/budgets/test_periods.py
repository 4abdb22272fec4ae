"""Calendar periods in IANA zones: daylight-saving days, midnights that do not exist, odd offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ai_chargeback_aggregator.budgets.periods import next_first_day, period_label, period_window

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "America/Havana", "Asia/Kolkata",
         "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham", "Pacific/Apia")  # fmt: skip


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(("zone", "at", "start", "hours"), [
    ("Europe/Berlin", utc(2026, 3, 29, 12), utc(2026, 3, 28, 23), 23),   # spring forward: a 23-hour day
    ("Europe/Berlin", utc(2026, 10, 25, 12), utc(2026, 10, 24, 22), 25),  # fall back: a 25-hour day
    ("America/New_York", utc(2026, 3, 8, 12), utc(2026, 3, 8, 5), 23),
    ("America/Santiago", utc(2022, 9, 11, 12), utc(2022, 9, 11, 4), 23),  # clocks jump 00:00 -> 01:00: the day starts at 01:00
    ("America/Havana", utc(2026, 11, 1, 12), utc(2026, 11, 1, 4), 25),    # midnight happens twice: the first one
    ("Asia/Kolkata", utc(2026, 11, 3, 19), utc(2026, 11, 3, 18, 30), 24),  # +05:30: days start at 18:30 UTC
    ("Asia/Kathmandu", utc(2026, 12, 31, 19), utc(2026, 12, 31, 18, 15), 24),
    ("Australia/Lord_Howe", utc(2026, 4, 4, 20), utc(2026, 4, 4, 13), 24.5),  # half-hour DST shift
])  # fmt: skip
def test_daily_periods_across_clock_changes(zone: str, at: datetime, start: datetime, hours: float) -> None:
    got_start, got_end = period_window("daily", ZoneInfo(zone), at)
    assert got_start == start
    assert got_end - got_start == timedelta(hours=hours)
    assert got_start <= at < got_end


def test_a_period_starts_at_its_first_instant_and_ends_just_before_the_next() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start, end = period_window("monthly", berlin, utc(2026, 11, 15))
    assert (start, end) == (utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
    assert period_window("monthly", berlin, start) == (start, end)
    assert period_window("monthly", berlin, start - timedelta(microseconds=1))[1] == start
    assert period_window("monthly", berlin, end)[0] == end
    assert period_label("monthly", start, berlin) == "2026-11"


def test_weeks_are_iso_weeks_from_monday_across_the_year_end() -> None:
    zone = ZoneInfo("UTC")
    start, end = period_window("weekly", zone, utc(2027, 1, 1, 12))  # a Friday
    assert start == utc(2026, 12, 28) and end == utc(2027, 1, 4)
    assert period_label("weekly", start, zone) == "2026-W53"


def test_month_after_december_is_january() -> None:
    start, end = period_window("monthly", ZoneInfo("America/New_York"), utc(2026, 12, 20))
    assert start == utc(2026, 12, 1, 5) and end == utc(2027, 1, 1, 5)
    assert next_first_day("monthly", start.date().replace(day=1)).month == 1


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        period_window("daily", ZoneInfo("UTC"), datetime(2026, 1, 1))  # noqa: DTZ001


@settings(max_examples=300, deadline=None)
@example(utc(2000, 10, 15, 6), "America/Santiago", "daily")  # clocks jump over midnight (found by hypothesis once)
@example(utc(2013, 3, 10, 12), "America/Havana", "daily")
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
       st.sampled_from(ZONES), st.sampled_from(("daily", "weekly", "monthly")))  # fmt: skip
def test_periods_hold_their_instant_and_tile_time(at: datetime, zone: str, period: str) -> None:
    tz = ZoneInfo(zone)
    start, end = period_window(period, tz, at)
    assert start <= at < end
    assert period_window(period, tz, end)[0] == end  # the next period starts where this one ends
    assert period_window(period, tz, start - timedelta(microseconds=1))[1] == start
    local = start.astimezone(tz)
    assert (local.hour, local.minute) == (0, 0) or _midnight_missing(local, tz)


def _midnight_missing(local: datetime, tz: ZoneInfo) -> bool:
    # In a zone whose clocks jump over midnight the day starts at the end of the gap. The minute
    # before is taken on the UTC line: arithmetic on a zoned datetime is wall-clock arithmetic,
    # which would land inside the gap (00:59 of the same day) instead of 23:59 the day before.
    before = (local.astimezone(UTC) - timedelta(minutes=1)).astimezone(tz)
    return before.date() < local.date() and local.utcoffset() != before.utcoffset()
