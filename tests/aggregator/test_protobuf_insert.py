"""The protobuf insert path stores exactly what the columnar path stores, row for row."""

from __future__ import annotations

import time
from pathlib import Path

from support.aggregator_fixtures import make_event

from ai_chargeback_aggregator.ingest.admission import Admitted
from ai_chargeback_aggregator.ingest.content import canonical_encoding, content_hash
from ai_chargeback_aggregator.ingest.protobuf_insert import EmbeddedProtobufInserter
from ai_chargeback_aggregator.ingest.rows import EVENT_COLUMNS, EXTRA, events_to_columns, price_columns
from ai_chargeback_aggregator.ingest.sinks import Candidates, EmbeddedSink, ServerSink
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

COST_COLUMNS = ("uncached_input_tokens", "non_reasoning_output_tokens", "billing_model", "cost_input", "cost_cached_input",
                "cost_cache_write", "cost_output", "cost_reasoning", "cost_request", "cost_total", "list_cost_total")  # fmt: skip


def varied_events() -> list[pb.UsageEvent]:
    now = int(time.time() * 1000)
    events = [
        make_event(),
        make_event(input_tokens=0, cached_input_tokens=0, output_tokens=0, reasoning_tokens=0),  # zeros, reported
        make_event(usage_source=pb.USAGE_SOURCE_NONE, usage_note="malformed-json", tenant_source=pb.IDENTITY_SOURCE_DEFAULT,
                   team="unattributed", team_source=pb.IDENTITY_SOURCE_NONE, unattributed_reason="no-team-tag",
                   policy_outcome=pb.POLICY_OUTCOME_REJECTED_AUTH, http_status=401),
        make_event(usage_source=pb.USAGE_SOURCE_KONG_AI_PROXY, streaming=True, latency_upstream_ms=0,
                   identity_conflicts=["team: header=x resolved=y", "tenant: header=a resolved=b"],
                   tags={"env": "prod", "gateway": "kong-eu-1"}, billable_extras={"web_search_requests": 3},
                   cache_write_input_tokens=7, service_tier="flex", trace_id="0af7651916cd43dd8448eb211c80319c"),
        make_event(usage_source=pb.USAGE_SOURCE_ESTIMATED, team="risk", app="fraud", workload="spiffe://x/y",
                   workload_source=pb.IDENTITY_SOURCE_HEADER, latency_total_ms=1234, latency_gateway_ms=3,
                   client_retry_count=2, upstream_tries=3, policy_outcome=pb.POLICY_OUTCOME_UPSTREAM_ERROR,
                   consumer_username="o'brien \\ {x}", started_at_unix_ms=now - 86_400_000),
    ]
    events[2].ClearField("input_tokens")  # nothing reported: absent, not zero
    events[2].ClearField("output_tokens")
    events[2].ClearField("cached_input_tokens")
    events[2].ClearField("reasoning_tokens")
    events[4].ClearField("reasoning_tokens")
    return events


def test_both_paths_store_identical_rows(tmp_path: Path) -> None:
    events = varied_events()
    senders = ["node-a", "node-b", "node-a", "node-c", "node-b"]
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        ingested = int(time.time() * 1000)
        payloads = [canonical_encoding(e) for e in events]
        hashes = [content_hash(p) for p in payloads]
        store.insert_columns("usage_events", events_to_columns(events, senders, ingested, hashes))
        store.command("CREATE TABLE chargeback.usage_events_pb AS chargeback.usage_events")
        EmbeddedProtobufInserter(store, "usage_events_pb").insert_events(payloads, hashes, senders, ingested, extra={})
        columns = ", ".join(EVENT_COLUMNS)
        _, columnar = store.query(f"SELECT {columns} FROM chargeback.usage_events ORDER BY event_id")
        _, protobuf = store.query(f"SELECT {columns} FROM chargeback.usage_events_pb ORDER BY event_id")
        assert len(protobuf) == len(events)
        for left, right in zip(columnar, protobuf):
            assert dict(zip(EVENT_COLUMNS, left)) == dict(zip(EVENT_COLUMNS, right))
    finally:
        store.close()


def test_per_row_extra_columns_follow_payload_order(tmp_path: Path) -> None:
    events = [make_event(kong_request_id=f"r{i}") for i in range(3000)]
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        inserter = EmbeddedProtobufInserter(store, "usage_events")
        extra = {"price_source": [f"src-{i % 7}" for i in range(3000)], "rate_input_e12": [i % 5 for i in range(3000)]}
        payloads = [canonical_encoding(e) for e in events]
        inserter.insert_events(payloads, [content_hash(p) for p in payloads], [f"s{i % 3}" for i in range(3000)],
                               int(time.time() * 1000), extra)  # fmt: skip
        _, rows = store.query("SELECT kong_request_id, price_source, rate_input_e12, sender_id FROM chargeback.usage_events")
        for request_id, source, rate, sender in rows:
            i = int(request_id[1:])
            assert (source, rate, sender) == (f"src-{i % 7}", i % 5, f"s{i % 3}")
    finally:
        store.close()


def priced_events() -> list[pb.UsageEvent]:
    """Events whose prices differ: catalog, token tiers, time of day, unknown model, not billed."""
    events = varied_events()
    for index, (provider, model, tokens) in enumerate([("openai", "gpt-4o-mini", 900), ("google", "gemini-2.5-pro", 250_000),
                                                       ("google", "gemini-2.5-pro", 100), ("deepseek", "deepseek-chat", 5000),
                                                       ("nobody", "no-model", 10), ("openai", "gpt-4o-mini", 901)]):  # fmt: skip
        events.append(make_event(provider=provider, served_model=model, input_tokens=tokens, output_tokens=index * 13,
                                 tenant=f"t{index % 2}"))  # fmt: skip
    events.append(make_event(policy_outcome=pb.POLICY_OUTCOME_REJECTED_AUTH, http_status=401))
    return events


def stored_rows(tmp_path: Path, sink_type: type[EmbeddedSink] | type[ServerSink], events: list[pb.UsageEvent],
                ingested: int) -> list[dict[str, object]]:  # fmt: skip
    """The flush of `events` as `sink_type` stores it, priced as the writer prices it: every
    column, the materialized costs included."""
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        candidates = Candidates()
        for owner, sender in enumerate(("node-a", "node-b")):
            candidates.add(Admitted.of_valid(f"b{owner}", sender, events[owner::2]), owner)
        columns = price_columns(candidates.keys)
        columns[EXTRA] = Pricer().enrich(columns)
        sink = sink_type(store)
        sink.prepare(candidates, columns)
        sink.insert(candidates, columns, ingested)
        sink.end_attempt()
        names, rows = store.query(f"SELECT *, {', '.join(COST_COLUMNS)} FROM chargeback.usage_events ORDER BY event_id")
        return [dict(zip(names, row)) for row in rows]
    finally:
        store.close()


def test_both_sinks_store_identical_priced_rows(tmp_path: Path) -> None:
    """The embedded sink sends each distinct price once and each event its index; the server
    sink sends every row's rates as columns. The stored rows, costs included, are the same."""
    events, ingested = priced_events(), int(time.time() * 1000)
    embedded = stored_rows(tmp_path / "embedded", EmbeddedSink, events, ingested)
    columnar = stored_rows(tmp_path / "server", ServerSink, events, ingested)
    assert len(embedded) == len(columnar) == len(events)
    assert embedded == columnar
    assert len({row["price_model_id"] for row in embedded}) >= 4 and len({row["cost_total"] for row in embedded}) >= 6
    assert {row["pricing_status"] for row in embedded} >= {"priced", "unpriced"}


def test_insert_settings_reach_the_insert(tmp_path: Path) -> None:
    """The insert carries its settings in its own SETTINGS clause: the Protobuf schema (else it
    could not read the payload at all) and optimize_on_insert = 0. With the engine's default,
    ReplacingMergeTree collapses two rows of one id as the block is written; here both stay
    until a merge (the writer never inserts one id twice, so the merge would find nothing)."""
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        event = make_event()
        payload = canonical_encoding(event)
        EmbeddedProtobufInserter(store, "usage_events").insert_events(
            [payload, payload], [content_hash(payload)] * 2, ["node-a"] * 2, int(time.time() * 1000), extra={})
        _, rows = store.query("SELECT count(), uniqExact(event_id) FROM chargeback.usage_events")
        assert rows == [(2, 1)]
    finally:
        store.close()
