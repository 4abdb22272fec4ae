"""Reading a rollup with FINAL stays cheap: a rebuilt day's month of the daily rollup is one part.

Each rebuild writes a new version of its days (and tombstones); FINAL over several
parts merges them on every read, which set the console's floor (docs/console.md,
"Speed"). The maintainer merges the rebuilt months right away; these tests fail if
it stops doing so. Background merges are kept from choosing parts, so only the maintainer's
own merge can leave one part.
"""

from __future__ import annotations

from datetime import timedelta

from support.seed import Seed, day_start, random_events, recent_day, usage_event

from ai_chargeback_aggregator.analytics.reports.report import build_report

PARTS_SQL = (
    "SELECT partition, count() FROM system.parts WHERE database = 'chargeback' AND table = 'usage_rollup_daily' AND active "
    "GROUP BY partition ORDER BY partition"
)


def daily_parts(seed: Seed) -> dict[str, int]:
    _, rows = seed.store.query(PARTS_SQL, read_only=False)
    return {str(p): int(n) for p, n in rows}


def test_each_rebuild_leaves_one_part_per_month_of_the_daily_rollup(seed: Seed) -> None:
    first, last = recent_day(3), recent_day(1)
    # Background merges choose nothing (every part is over their size limit); OPTIMIZE ... FINAL still merges.
    seed.store.command("ALTER TABLE chargeback.usage_rollup_daily MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1, "
                       "max_bytes_to_merge_at_min_space_in_pool = 1")
    seed.insert(random_events(300, first=first, days=3))
    seed.build_rollups()
    report = build_report(seed.runner, first=first, last=last, by="team")
    for round_ in range(3):  # late events: each day is rebuilt again, adding a version of it
        late = day_start(first) + timedelta(days=round_, hours=2, minutes=7)
        seed.insert([usage_event(late, team="payments")])
        seed.build_rollups()
        assert set(daily_parts(seed).values()) == {1}, daily_parts(seed)
    rebuilt = build_report(seed.runner, first=first, last=last, by="team")
    assert rebuilt.sources["days_from_daily_rollup"] == 3
    assert rebuilt.totals["events"] == report.totals["events"] + 3  # merged, and still exact
