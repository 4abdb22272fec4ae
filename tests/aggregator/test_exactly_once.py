"""Problem 3 of issue 16: one event id, one row, forever.

Dedup used to hold only inside a memory window of recent ids and a sort key
that a replay could change: past the window, id #0 replayed with another team
became a second billed row. Here a real `chargeback serve` process stores more
events than its memory of ids holds, then gets replays from across the whole
range, identical and altered, before and after a restart: every id stays one
row (raw, distinct and FINAL counts equal), identical replays are acked as
duplicates, altered ones are kept aside as conflicts (never billed) and shown
by `chargeback governance replay-conflicts` and in every report.

The same proof at 5M events is bench/bench_dedup.py (too long for CI).
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from support.aggregator_fixtures import make_event, make_settings
from support.aggregator_process import start_serve, store_counts

from ai_chargeback_aggregator.analytics.reports.report import build_report
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_aggregator.ingest.writer import RECENT_IDS_CAPACITY
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

METHOD = "/chargeback.v1.UsageIngest/StreamUsage"
TOTAL = RECENT_IDS_CAPACITY + 20_000  # past the memory of recent ids
BATCH = 5_000


def stream(grpc_listen: str, batches: list[pb.UsageBatch]) -> list[pb.BatchAck]:
    with grpc.insecure_channel(grpc_listen, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.stream_stream(METHOD, request_serializer=pb.UsageBatch.SerializeToString,
                                     response_deserializer=pb.BatchAck.FromString)  # fmt: skip
        acks = list(call(iter(batches), timeout=600))
    assert [a.status for a in acks] == [pb.BatchAck.STATUS_STORED] * len(batches)
    return acks


def altered(event: pb.UsageEvent, **changes: object) -> pb.UsageEvent:
    copy = pb.UsageEvent()
    copy.CopyFrom(event)
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


@pytest.mark.slow
def test_replays_across_the_whole_range_never_make_a_second_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    log = tmp_path / "aggregator.log"
    events = [make_event(kong_request_id=f"r{i}", team=f"team-{i % 7}") for i in range(TOTAL)]
    first, middle, last = events[0], events[TOTAL // 2], events[-1]
    replays = [
        first,  # identical, long out of the memory window: a duplicate
        middle,  # identical
        altered(first, team="someone-else"),  # the probe: another team
        altered(middle, input_tokens=middle.input_tokens + 1000),  # other counts
        altered(last, started_at_unix_ms=last.started_at_unix_ms - 3_600_000),  # another hour (still in memory)
    ]
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, log)
    try:
        acks = stream(settings.grpc_listen, [pb.UsageBatch(batch_id=f"b{n}", sequence=n + 1, events=events[s : s + BATCH])
                                             for n, s in enumerate(range(0, TOTAL, BATCH))])  # fmt: skip
        assert sum(a.events_stored for a in acks) == TOTAL
        (ack,) = stream(settings.grpc_listen, [pb.UsageBatch(batch_id="replay-1", sequence=1, events=replays)])
        assert (ack.events_stored, ack.events_duplicate, ack.events_conflicting) == (0, 2, 3)
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0

        server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, log)  # nothing in memory now
        (ack,) = stream(settings.grpc_listen, [pb.UsageBatch(batch_id="replay-2", sequence=1, events=replays)])
        assert (ack.events_stored, ack.events_duplicate, ack.events_conflicting) == (0, 2, 3)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0

    assert store_counts(settings.store_dsn) == (TOTAL, TOTAL, TOTAL)
    store = Store(settings.store_dsn)
    try:
        _, rows = store.query("SELECT team, input_tokens FROM chargeback.usage_events FINAL WHERE event_id IN "
                              "{ids:Array(UUID)} ORDER BY kong_request_id", {"ids": [first.event_id, middle.event_id]})  # fmt: skip
        assert rows == [(first.team, first.input_tokens), (middle.team, middle.input_tokens)]  # the stored versions stand
        _, rows = store.query("SELECT count() FROM chargeback.event_conflicts FINAL")
        assert rows[0][0] == 3  # each altered replay once, though it came twice
        today = datetime.now(UTC).date()
        report = build_report(LocalRunner(store), first=today, last=today, by="team")
        assert report.totals["events"] == TOTAL and report.totals["replay_conflicts"] == 3
        assert any("3 replays conflicted" in warning for warning in report.warnings)
    finally:
        store.close()

    assert main(["governance", "replay-conflicts", "--store-dsn", settings.store_dsn, "--days", "1", "--format", "json"]) == 1
    listed = json.loads(capsys.readouterr().out)["sections"]["replay_conflicts"]
    assert sorted(tuple(row["differs"]) for row in listed) == [("input_tokens",), ("started_at",), ("team",)]
    assert all(row["stored_team"] != "someone-else" for row in listed)
