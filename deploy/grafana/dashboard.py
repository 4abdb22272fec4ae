"""Render deploy/grafana/chargeback.json, the Grafana dashboard (grafana-clickhouse-datasource).

The JSON is what Grafana loads; this file is where its SQL is written once.
Every spend panel reads the same hourly source, which is exact and cheap:

* hours the rollup maintainer marked clean come from ``usage_rollup_hourly``
  (read with FINAL, tombstones skipped), which equals the deduplicated raw
  events of that hour at its build time (migration 0004);
* every other hour (being written now, or dirty after a late event or a
  reprice) comes from ``usage_events FINAL``.

So a dashboard never double counts and never lags the raw events. Costs are
``cost_total`` (what we pay) and ``list_cost_total`` (public price), both from
migration 0002; unpriced usage is counted apart and never shown as $0 spend.
A team of ``unattributed`` is the plugin's marker for usage no team owns.

    python deploy/grafana/dashboard.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent / "chargeback.json"
DB = "chargeback"
DS = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
TIME_SERIES, TABLE = 0, 1  # the plugin's `format` values (sqlutil)

# The dashboard's filters, applied to every panel.
FILTERS = "tenant IN (${tenant:singlequote}) AND team IN (${team:singlequote})"
# Hours whose rollup is current: the latest state per hour wins (ReplacingMergeTree(version)).
CLEAN_HOURS = (
    f"SELECT period_start FROM {DB}.rollup_state FINAL "
    "WHERE grain = 'hour' AND state = 'clean' "
    "AND period_start >= toStartOfHour($__fromTime) AND period_start <= $__toTime"
)
SOURCE = f"""(
    SELECT period_start AS hour, tenant, team, app, provider, model, pricing_status,
           events, input_tokens, cached_input_tokens, output_tokens, cost_total, list_cost_total
    FROM {DB}.usage_rollup_hourly FINAL
    WHERE is_deleted = 0
      AND period_start >= toStartOfHour($__fromTime) AND period_start <= $__toTime
      AND period_start IN ({CLEAN_HOURS})
    UNION ALL
    SELECT toDateTime(toStartOfHour(started_at), 'UTC') AS hour, tenant, team, app, provider,
           billing_model AS model, pricing_status,
           toUInt64(1) AS events, input_tokens, cached_input_tokens, output_tokens, cost_total, list_cost_total
    FROM {DB}.usage_events FINAL
    WHERE started_at >= toStartOfHour($__fromTime) AND started_at <= $__toTime
      AND toDateTime(toStartOfHour(started_at), 'UTC') NOT IN ({CLEAN_HOURS})
)"""
# Buckets no finer than the rollup grain.
BUCKET = "toStartOfInterval(hour, INTERVAL greatest($__interval_s, 3600) second)"
# Decimal(38, 18) is exact in reports; a chart only needs floats.
SPEND = "toFloat64(sumIf(cost_total, pricing_status != 'unpriced'))"


def sql(select: str, *, tail: str = "") -> str:
    return f"SELECT {select}\nFROM {SOURCE}\nWHERE {FILTERS}\n{tail}".strip()


def panel(
    pid: int, title: str, kind: str, query: str, *, fmt: int, pos: tuple[int, int, int, int], description: str,
    unit: str = "", options: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    x, y, w, h = pos
    defaults: dict[str, Any] = {"unit": unit} if unit else {}
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "targets": [
            {"refId": "A", "datasource": DS, "editorType": "sql", "queryType": "sql", "format": fmt, "rawSql": query}
        ],
    }


STACKED = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum"]}, "tooltip": {"mode": "multi"}}


def panels() -> list[dict[str, Any]]:
    return [
        panel(1, "Spend (contracted)", "stat", sql(f"{SPEND} AS spend_usd"), fmt=TABLE, pos=(0, 0, 6, 4),
              unit="currencyUSD", description="cost_total of priced usage in the range; unpriced usage is counted apart."),
        panel(2, "Unattributed share", "stat",
              sql("toFloat64(sumIf(cost_total, team = 'unattributed')) / nullIf(toFloat64(sum(cost_total)), 0) AS spend_share, "
                  "sumIf(events, team = 'unattributed') / nullIf(sum(events), 0) AS request_share"),
              fmt=TABLE, pos=(6, 0, 6, 4), unit="percentunit",
              description="Share of spend and of requests no team owns (team 'unattributed': no consumer, or no team tag)."),
        panel(3, "Cache hit ratio", "stat",
              sql("sum(cached_input_tokens) / nullIf(sum(input_tokens), 0) AS cache_hit_ratio"),
              fmt=TABLE, pos=(12, 0, 6, 4), unit="percentunit",
              description="Cached input tokens over all input tokens (input includes cached)."),
        panel(4, "Unpriced requests", "stat",
              sql("sumIf(events, pricing_status = 'unpriced') AS unpriced_requests"),
              fmt=TABLE, pos=(18, 0, 6, 4),
              description="Requests with no known price: not in any spend figure until a price exists and they are repriced."),
        panel(5, "Spend by team", "timeseries",
              sql(f"{BUCKET} AS time, team, {SPEND} AS spend", tail="GROUP BY time, team\nORDER BY time, team"),
              fmt=TIME_SERIES, pos=(0, 4, 12, 9), unit="currencyUSD", options=STACKED,
              description="Contracted spend per team over time."),
        panel(6, "Spend by tenant", "timeseries",
              sql(f"{BUCKET} AS time, tenant, {SPEND} AS spend", tail="GROUP BY time, tenant\nORDER BY time, tenant"),
              fmt=TIME_SERIES, pos=(12, 4, 12, 9), unit="currencyUSD", options=STACKED,
              description="Contracted spend per tenant over time."),
        panel(7, "Top apps", "table",
              sql(f"tenant, team, app, {SPEND} AS spend_usd, sum(events) AS requests, "
                  "sum(input_tokens) AS tokens_in, sum(output_tokens) AS tokens_out",
                  tail="GROUP BY tenant, team, app\nORDER BY spend_usd DESC, requests DESC\nLIMIT 10"),
              fmt=TABLE, pos=(0, 13, 12, 9), description="The ten applications that spent most in the range."),
        panel(8, "Top models", "table",
              sql(f"provider, model, {SPEND} AS spend_usd, "
                  "toFloat64(sumIf(list_cost_total, pricing_status != 'unpriced')) AS list_price_usd, "
                  "sum(events) AS requests, sum(input_tokens) AS tokens_in, sum(output_tokens) AS tokens_out, "
                  "sum(cached_input_tokens) / nullIf(sum(input_tokens), 0) AS cache_hit_ratio",
                  tail="GROUP BY provider, model\nORDER BY spend_usd DESC, requests DESC\nLIMIT 10"),
              fmt=TABLE, pos=(12, 13, 12, 9),
              description="The ten models that cost most, with list price (public) beside contracted spend."),
        panel(9, "Cache hit ratio by provider", "timeseries",
              sql(f"{BUCKET} AS time, provider, sum(cached_input_tokens) / nullIf(sum(input_tokens), 0) AS cache_hit_ratio",
                  tail="GROUP BY time, provider\nORDER BY time, provider"),
              fmt=TIME_SERIES, pos=(0, 22, 12, 8), unit="percentunit",
              description="Prompt caching per provider over time."),
        panel(10, "Unattributed share over time", "timeseries",
              sql(f"{BUCKET} AS time, "
                  "toFloat64(sumIf(cost_total, team = 'unattributed')) / nullIf(toFloat64(sum(cost_total)), 0) AS spend_share, "
                  "sumIf(events, team = 'unattributed') / nullIf(sum(events), 0) AS request_share",
                  tail="GROUP BY time\nORDER BY time"),
              fmt=TIME_SERIES, pos=(12, 22, 12, 8), unit="percentunit",
              description="A rising line means traffic is bypassing attribution (new keys without team tags)."),
    ]  # fmt: skip


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,  # on time range change
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    recent = f"FROM {DB}.usage_events WHERE $__timeFilter(started_at)"
    return {
        "uid": "ai-chargeback",
        "title": "AI chargeback",
        "description": "Spend on LLM traffic metered at Kong, by tenant, team, app and model. Generated by deploy/grafana/dashboard.py.",
        "tags": ["ai-chargeback", "clickhouse"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "timezone": "utc",
        "graphTooltip": 1,
        "templating": {
            "list": [
                {"name": "datasource", "label": "ClickHouse", "type": "datasource",
                 "query": "grafana-clickhouse-datasource", "current": {}, "hide": 0},  # fmt: skip
                variable("tenant", "Tenant", f"SELECT DISTINCT tenant {recent} ORDER BY tenant"),
                variable("team", "Team", f"SELECT DISTINCT team {recent} AND tenant IN (${{tenant:singlequote}}) ORDER BY team"),
            ]
        },
        "annotations": {"list": []},
        "panels": panels(),
    }


def render_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if chargeback.json is stale")
    args = parser.parse_args(argv)
    text = render_text()
    if args.check:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.name} is stale: run python deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
