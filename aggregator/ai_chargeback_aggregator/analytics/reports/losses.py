"""Events the gateways reported lost in a period (delivery_losses): shown on every report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .runner import Runner


def render_losses(database: str, start: datetime, end: datetime) -> tuple[str, dict[str, Any]]:
    # A loss record spans [first_lost_at, last_lost_at]; it counts where it overlaps the period.
    sql = (
        "SELECT toUInt64(sum(events_lost)), groupUniqArray(reason) "
        f"FROM `{database}`.delivery_losses FINAL "
        "WHERE first_lost_at < {end:DateTime64(3, 'UTC')} AND last_lost_at >= {start:DateTime64(3, 'UTC')}"
    )
    return sql, {"start": start, "end": end}


def reported_losses(runner: Runner, start: datetime, end: datetime) -> tuple[int, list[str]]:
    _, rows = runner.query(*render_losses(runner.database, start, end))
    if not rows:
        return 0, []
    lost, reasons = rows[0]
    return int(lost or 0), sorted(reasons or [])
