"""What a period's figures lack, shown on every report: events gateways reported lost
(delivery_losses), events quarantined at ingest (quarantined_events: they broke the event
contract), and replays set aside because they conflicted with stored events (event_conflicts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .runner import Runner

_START, _END = "{start:DateTime64(3, 'UTC')}", "{end:DateTime64(3, 'UTC')}"


def _render(select: str, table: str, within: str, database: str, start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
    return f"SELECT {select} FROM `{database}`.{table} FINAL WHERE {within}", {"start": start, "end": end}


def render_losses(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
    # A loss record spans [first_lost_at, last_lost_at]; it counts where it overlaps the period.
    return _render("toUInt64(sum(events_lost)), groupUniqArray(reason)", "delivery_losses",
                   f"first_lost_at < {_END} AND last_lost_at >= {_START}", database, start, end)  # fmt: skip


def render_quarantined(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
    return _render("count(), groupUniqArray(field)", "quarantined_events",
                   f"occurred_at >= {_START} AND occurred_at < {_END}", database, start, end)  # fmt: skip


def render_replay_conflicts(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
    # The time a UUIDv7 carries is the stored event's time: the period it is billed in.
    return _render("count()", "event_conflicts",
                   f"UUIDv7ToDateTime(event_id) >= {_START} AND UUIDv7ToDateTime(event_id) < {_END}", database, start, end)  # fmt: skip


def reported_losses(runner: Runner, start: datetime, end: datetime) -> tuple[int, list[str]]:
    _, rows = runner.query(*render_losses(runner.database, start, end))
    if not rows:
        return 0, []
    lost, reasons = rows[0]
    return int(lost or 0), sorted(reasons or [])


def quarantined_events(runner: Runner, start: datetime, end: datetime) -> tuple[int, list[str]]:
    """How many events of the period were quarantined, and the contract fields they broke."""
    _, rows = runner.query(*render_quarantined(runner.database, start, end))
    if not rows:
        return 0, []
    count, fields = rows[0]
    return int(count or 0), sorted(fields or [])


def replay_conflicts(runner: Runner, start: datetime, end: datetime) -> int:
    _, rows = runner.query(*render_replay_conflicts(runner.database, start, end))
    return int(rows[0][0] or 0) if rows else 0
