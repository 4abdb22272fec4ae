"""Every query the product reads with answers the same through POST /v1/sql as straight from the store.

The CLI's commands run against the store while every query they send is
recorded with its answer; each is then run again through the analyst path (the
guard, ClickHouse's canonical text of the checked query, a new read-only
session with the analyst limits, the spooled JSON answer) and must come back
identical, value for value. This is what makes `--aggregator` safe to use for
reports: the guard refuses nothing the product needs and changes no answer.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.seed import random_events, recent_day, seeded_store

from ai_chargeback_aggregator.analytics import queries
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.server.analyst_sql import AnalystSql
from ai_chargeback_aggregator.store.wire import decode, encode


def test_every_query_the_product_reads_answers_the_same_through_the_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    for name in ("CHARGEBACK_SQL_TOKEN", "CHARGEBACK_AGGREGATOR_URL", "CHARGEBACK_STORE_DSN"):
        monkeypatch.delenv(name, raising=False)
    first, last = recent_day(9), recent_day(0)
    with seeded_store(tmp_path) as seed:
        seed.insert(random_events(400, first=first, days=10))
        seed.build_rollups()
        dsn = seed.store.dsn
        recorded: list[tuple[str, dict[str, Any], list[str], list[tuple[Any, ...]]]] = []
        local_query = LocalRunner.query

        def recording(runner: LocalRunner, sql: str, params: Any = None) -> tuple[list[str], list[tuple[Any, ...]]]:
            columns, rows = local_query(runner, sql, params)
            recorded.append((sql, dict(params or {}), columns, rows))
            return columns, rows

        monkeypatch.setattr(LocalRunner, "query", recording)
        period = ["--from", first.isoformat(), "--to", last.isoformat()]
        store = ["--store-dsn", dsn]
        assert main(["report", "--by", "team", *period, "--format", "json", *store]) in (0, 1)
        handle = json.loads(capsys.readouterr().out)["lines"][0]["handle"]
        commands = [
            ["report", "--by", "consumer", "--mode", "chargeback", *period],
            ["report", "--by", "model", *period],
            ["explain", handle],
            ["statement", "--team", "payments", *period, "--out", str(tmp_path / "statement.html")],
            ["export", "focus", *period, "--out", str(tmp_path / "focus.csv")],
            ["governance", "all", *period, "--model", "o3", "--app", "checkout"],
            ["prices", "list"],
        ]  # fmt: skip
        for name in queries.names():
            text = queries.text(name)
            dates = "{start:Date}" in text
            values = {"start": first.isoformat() if dates else f"{first} 00:00:00", "end": last.isoformat() if dates else f"{last} 00:00:00",
                      "tenant": "", "limit": "5", "month": last.isoformat()}  # fmt: skip
            commands.append(["sql", "--query", name, *[f"--param={p}={values[p]}" for p in sorted(sql_parameters(text) - {"db"})]])
        for command in commands:
            assert main([*command, *store]) in (0, 1), (command, capsys.readouterr().err)
        monkeypatch.setattr(LocalRunner, "query", local_query)
        capsys.readouterr()

        assert len(recorded) > 40 and len({sql for sql, *_ in recorded}) > 25  # every command read something
        analyst = AnalystSql.for_store(dsn, database="chargeback")
        for sql, params, columns, rows in recorded:
            outcome = analyst.run(sql, json.loads(json.dumps(encode(params))))  # the params as RemoteRunner sends them
            assert outcome.status == 200 and outcome.body is not None, (sql, outcome.error)
            with outcome.body:
                answer = json.loads(outcome.body.read())
            assert answer["columns"] == columns, sql
            # The same rows, value for value (order only where the query sets one, and ties may go either way).
            assert Counter(repr(tuple(decode(row))) for row in answer["rows"]) == Counter(repr(row) for row in rows), sql
