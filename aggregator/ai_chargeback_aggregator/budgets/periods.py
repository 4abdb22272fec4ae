"""Budget periods: calendar days, ISO weeks (Monday) and months in a budget's own time zone.

A period is a window of UTC instants [start, end): from the first instant of its
first local day to the first instant of the next period's. Local days are 23 or
25 hours long across a daylight-saving change, and where a zone's clocks jump
over midnight (America/Santiago, Asia/Beirut...) a day starts at the end of the
gap: ``datetime(..., tzinfo=zone)`` with fold=0 maps a missing local time with
the offset in force before the jump, which lands exactly there. An ambiguous
midnight (clocks set back over it) is its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("daily", "weekly", "monthly")


def period_window(period: str, zone: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
    """The period holding instant ``at``, as UTC instants [start, end)."""
    if at.tzinfo is None:
        raise ValueError("period_window needs an aware datetime")
    first = first_day(period, at.astimezone(zone).date())
    return day_start(first, zone), day_start(next_first_day(period, first), zone)


def first_day(period: str, day: date) -> date:
    """The local date a period holding ``day`` starts on."""
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    raise ValueError(f"period: expected one of {', '.join(PERIODS)}, got {period!r}")


def next_first_day(period: str, first: date) -> date:
    if period == "daily":
        return first + timedelta(days=1)
    if period == "weekly":
        return first + timedelta(days=7)
    if period == "monthly":
        return date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    raise ValueError(f"period: expected one of {', '.join(PERIODS)}, got {period!r}")


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local ``day`` in ``zone``, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def period_label(period: str, start: datetime, zone: ZoneInfo) -> str:
    """'2026-11' (monthly), '2026-W45' (weekly) or '2026-11-03' (daily), in local dates."""
    local = start.astimezone(zone).date()
    if period == "monthly":
        return f"{local.year:04d}-{local.month:02d}"
    if period == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return local.isoformat()
