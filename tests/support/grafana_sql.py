"""Grafana's side of a dashboard query, for tests: expand the ClickHouse plugin's macros and variables.

Expansions follow grafana/clickhouse-datasource pkg/macros/macros.go, so a
query that runs here runs the same in Grafana. Anything left starting with
``$`` is an unknown macro or variable, and an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")


def expand(sql: str, *, start: datetime, end: datetime, interval_s: int, variables: Mapping[str, Sequence[str]]) -> str:
    frm, to = int(start.timestamp()), int(end.timestamp())
    out = _TIME_FILTER.sub(lambda m: f"{m[1]} >= toDateTime({frm}) AND {m[1]} <= toDateTime({to})", sql)
    out = out.replace("$__fromTime", f"toDateTime({frm})").replace("$__toTime", f"toDateTime({to})")
    out = out.replace("$__interval_s", str(max(interval_s, 1)))

    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        if name not in variables:
            raise KeyError(f"unknown variable or macro ${name} in dashboard SQL")
        values = list(variables[name])
        if match[2] in ("singlequote", None):
            return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
        raise KeyError(f"unsupported variable format {match[2]!r}")

    out = _VAR.sub(variable, out)
    if "$" in out:
        raise ValueError(f"unexpanded $ left in SQL: {out}")
    return out


def targets(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(title, rawSql) of every panel target and every query variable."""
    found = [(p["title"], t["rawSql"]) for p in dashboard["panels"] for t in p["targets"]]
    found += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found
