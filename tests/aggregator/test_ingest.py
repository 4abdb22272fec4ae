"""The aggregator over a real gRPC channel into the embedded store (chDB): no mocks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.aggregator_fixtures import count_rows, make_event, make_settings, stub_for

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_proto import pb


def test_ack_comes_after_rows_are_queryable(aggregator: Aggregator) -> None:
    channel, stub = stub_for(aggregator)
    events = [make_event(kong_request_id=f"r{i}") for i in range(25)]
    batch = pb.UsageBatch(batch_id="b1", sender_id="node-a", sequence=1, events=events)
    (ack,) = list(stub.StreamUsage(iter([batch]), timeout=20))
    assert ack.status == pb.BatchAck.STATUS_STORED
    assert (ack.batch_id, ack.sequence, ack.events_stored, ack.events_duplicate) == ("b1", 1, 25, 0)
    assert count_rows(aggregator) == 25  # durable before the ack, not eventually
    _, rows = aggregator.store.query(
        "SELECT team, served_model, input_tokens, cached_input_tokens, output_tokens, usage_source, "
        "team_source, usage_reported_mask, sender_id FROM chargeback.usage_events LIMIT 1"
    )
    assert rows[0] == ("payments", "gpt-4o-mini-2024-07-18", 120, 20, 30, "provider", "consumer", 1 | 2 | 8 | 16, "node-a")
    channel.close()


def test_many_batches_on_one_stream_are_acked_in_order(aggregator: Aggregator) -> None:
    channel, stub = stub_for(aggregator)
    batches = [pb.UsageBatch(batch_id=f"b{i}", sequence=i, events=[make_event() for _ in range(10)]) for i in range(1, 41)]
    acks = list(stub.StreamUsage(iter(batches), timeout=30))
    assert [a.sequence for a in acks] == list(range(1, 41))
    assert all(a.status == pb.BatchAck.STATUS_STORED for a in acks)
    assert count_rows(aggregator) == 400
    channel.close()


def test_resent_batch_is_acknowledged_but_not_stored_twice(aggregator: Aggregator) -> None:
    channel, stub = stub_for(aggregator)
    events = [make_event() for _ in range(5)]
    first = pb.UsageBatch(batch_id="b1", sequence=1, events=events)
    again = pb.UsageBatch(batch_id="b1", sequence=2, events=events)
    acks = list(stub.StreamUsage(iter([first, again]), timeout=20))
    assert [(a.events_stored, a.events_duplicate) for a in acks] == [(5, 0), (0, 5)]
    assert count_rows(aggregator) == 5
    channel.close()


def test_one_id_twice_in_one_flush_makes_one_row_even_before_any_merge(aggregator: Aggregator) -> None:
    """The events insert skips ClickHouse's merge on insert (optimize_on_insert = 0): it relies
    on the writer never inserting one id twice. Counted without FINAL, so a second row shows."""
    channel, stub = stub_for(aggregator)
    event, other = make_event(), make_event()
    altered = pb.UsageEvent()
    altered.CopyFrom(event)
    altered.output_tokens += 1
    batch = pb.UsageBatch(batch_id="b1", sequence=1, events=[event, event, altered, other])
    (ack,) = list(stub.StreamUsage(iter([batch]), timeout=20))
    assert (ack.events_stored, ack.events_duplicate, ack.events_conflicting) == (2, 1, 1)
    _, rows = aggregator.store.query("SELECT event_id, output_tokens FROM chargeback.usage_events ORDER BY event_id")
    assert sorted((str(eid), tokens) for eid, tokens in rows) == sorted(
        [(event.event_id, event.output_tokens), (other.event_id, other.output_tokens)])
    channel.close()


def test_invalid_events_are_rejected_with_reasons_and_valid_ones_kept(aggregator: Aggregator) -> None:
    channel, stub = stub_for(aggregator)
    good = make_event()
    bad_id = make_event(event_id="not-a-uuid")
    bad_tokens = make_event(input_tokens=10, cached_input_tokens=50)
    bad_tags = make_event(tags={f"k{i}": "v" for i in range(40)})
    batch = pb.UsageBatch(batch_id="b", sequence=1, events=[bad_id, good, bad_tokens, bad_tags])
    (ack,) = list(stub.StreamUsage(iter([batch]), timeout=20))
    assert ack.status == pb.BatchAck.STATUS_STORED and ack.events_stored == 1
    reasons = {r.event_id: r.reason for r in ack.rejected}
    assert {r.field for r in ack.rejected} == {"event_id", "cached_input_tokens", "tags"}
    assert reasons["not-a-uuid"].startswith("event_id")
    assert reasons[bad_tokens.event_id].startswith("cached_input_tokens")
    assert reasons[bad_tags.event_id].startswith("tags")
    assert count_rows(aggregator) == 1
    channel.close()


def test_wrong_or_missing_token_is_unauthenticated(tmp_path: Path) -> None:
    agg = Aggregator(make_settings(tmp_path, auth_token="s3cret-token"))
    agg.start()
    try:
        channel, stub = stub_for(agg)
        batch = pb.UsageBatch(batch_id="b", sequence=1, events=[make_event()])
        for metadata in (None, [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as err:
                list(stub.StreamUsage(iter([batch]), metadata=metadata, timeout=10))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (ack,) = list(stub.StreamUsage(iter([batch]), metadata=[("authorization", "Bearer s3cret-token")], timeout=10))
        assert ack.events_stored == 1
        channel.close()
    finally:
        agg.stop(grace_s=2)


def test_health_endpoints_and_grpc_health(aggregator: Aggregator) -> None:
    base = f"http://{aggregator.settings.http_listen}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
        body = json.loads(response.read())
    assert body == {"ready": True, "checks": {"store": "ok"}}
    assert "chdb" not in json.dumps(body)  # health reveals nothing about the store's location
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        assert b"chargeback_events_received" in response.read()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/nope", timeout=5)
    assert err.value.code == 404
    channel = grpc.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}")
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="chargeback.v1.UsageIngest"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()


def test_readyz_is_503_when_the_store_is_gone(aggregator: Aggregator) -> None:
    aggregator.store.dsn = "http://127.0.0.1:1"  # a server store nobody listens on
    aggregator.store.close()
    ok, reason = aggregator.store.ping()
    assert not ok and "unreachable" in reason
    aggregator._store_ok, aggregator._store_reason = ok, reason
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{aggregator.settings.http_listen}/readyz", timeout=5)
    assert err.value.code == 503
    assert json.loads(err.value.read())["ready"] is False


def test_a_malformed_batch_ends_the_stream_with_invalid_argument(aggregator: Aggregator) -> None:
    channel, stub = stub_for(aggregator)
    good = pb.UsageBatch(batch_id="ok", sequence=1, events=[make_event()])
    nameless = pb.UsageBatch(batch_id="", sequence=2, events=[make_event()])
    responses = stub.StreamUsage(iter([good, nameless]), timeout=20)
    assert next(responses).events_stored == 1
    with pytest.raises(grpc.RpcError) as err:
        next(responses)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "batch_id" in (err.value.details() or "")
    assert count_rows(aggregator) == 1
    channel.close()
