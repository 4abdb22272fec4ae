"""One query split by a dimension answers exactly what one report per value does (the team page's apps x models).

Both sources are exercised: whole clean days from the daily rollup, and a dirty
day read from raw events; values spelled as 'nobody' ('' and 'unattributed')
stay separate, as their filters are.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from support.seed import Seed, day_start, random_events, recent_day, usage_event

from ai_chargeback_aggregator.analytics.reports.allocation_config import UnattributedRule, parse
from ai_chargeback_aggregator.analytics.reports.report import (
    Report,
    build_report,
    build_whole_and_split_reports,
)

VALUES = ("checkout", "ranker", "helpdesk", "batch-jobs", "", "unattributed", "no-such-app")


def figures(report: Report) -> dict[str, Any]:
    """Everything a report states except when it was generated."""
    return {k: v for k, v in report.to_dict().items() if k != "generated_at"}


@pytest.mark.parametrize("mode", ["showback", "chargeback"])
def test_split_reports_equal_one_report_per_value(seed: Seed, mode: str) -> None:
    first, last = recent_day(3), recent_day(1)
    seed.insert(random_events(800, first=first, days=3))
    seed.insert([usage_event(day_start(first) + timedelta(hours=4), team="payments", app="")])
    seed.build_rollups()
    seed.insert([usage_event(day_start(last) + timedelta(hours=9), team="payments", app="ranker")])  # last day dirty: raw
    config = parse({"platform_fee": [{"effective_from": first.isoformat(), "per_request_usd": "0.00037", "uplift_percent": "3.3"}],
                    "unattributed": {"strategy": "pro_rata"}})  # fmt: skip
    for filters in ({"team": "payments"}, {}):
        _, split = build_whole_and_split_reports(seed.runner, first=first, last=last, by="model", split="app", values=VALUES,
                                                 mode=mode, config=config, filters=filters)  # fmt: skip
        assert list(split) == list(VALUES)
        for value in VALUES:
            alone = build_report(seed.runner, first=first, last=last, by="model", mode=mode, config=config, filters={**filters, "app": value})
            assert figures(split[value]) == figures(alone), (filters, value)
        assert split["checkout"].sources["hours_from_raw_events"] == 1  # the dirty hour; the rest from rollups
        assert split["checkout"].lines and not split["no-such-app"].lines
        # The unsplit report from the same query (the statement's by-model lines), allocating by its own policy.
        own = replace(config, unattributed=UnattributedRule(), per_dimension={})
        whole, again = build_whole_and_split_reports(seed.runner, first=first, last=last, by="model", split="app", values=VALUES,
                                                     mode=mode, config=own, whole_config=config, filters=filters)  # fmt: skip
        alone = build_report(seed.runner, first=first, last=last, by="model", mode=mode, config=config, filters=filters or None)
        assert figures(whole) == figures(alone), filters
        for value in VALUES:
            own_alone = build_report(seed.runner, first=first, last=last, by="model", mode=mode, config=own, filters={**filters, "app": value})
            assert figures(again[value]) == figures(own_alone), (filters, value)
