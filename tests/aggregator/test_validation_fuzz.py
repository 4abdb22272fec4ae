"""Hostile input at the gRPC endpoint: random bytes and mutated protobufs never crash the
aggregator, never get stored as valid, and never disturb a valid stream next to them."""

from __future__ import annotations

import random
import threading

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.aggregator_fixtures import count_rows, make_event, stub_for

from ai_chargeback_aggregator.ingest.validation import Invalid, validate_event
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_proto import pb

METHOD = "/chargeback.v1.UsageIngest/StreamUsage"


def test_each_limit_names_its_field() -> None:
    cases = {
        "team": make_event(team="t" * 300),
        "trace_id": make_event(trace_id="x" * 2000),
        "identity_conflicts": make_event(identity_conflicts=["c"] * 20),
        "input_tokens": make_event(input_tokens=10**12),
        "reasoning_tokens": make_event(output_tokens=5, reasoning_tokens=6),
        "started_at_unix_ms": make_event(started_at_unix_ms=1),
        "latency_total_ms": make_event(latency_total_ms=10**9),
        "http_status": make_event(http_status=42),
        "tags": make_event(tags={"k": "v" * 300}),
        "usage_source": make_event(usage_source=99),
        "event_id": make_event(event_id="0192D1B8-7C3A-7000-8000-000000000000"),
    }
    for field, event in cases.items():
        try:
            validate_event(event, event.observed_at_unix_ms)
        except Invalid as exc:
            assert exc.field == field, (field, str(exc))
        else:
            raise AssertionError(f"{field}: accepted")


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


def test_random_bytes_and_mutated_batches_do_not_crash_or_disturb_a_valid_stream(aggregator: Aggregator) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{aggregator.grpc_port}")
    raw_call = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=pb.BatchAck.FromString)
    valid_acks: list[pb.BatchAck] = []

    def valid_stream() -> None:
        _, stub = stub_for(aggregator)
        batches = (pb.UsageBatch(batch_id=f"v{i}", sequence=i, events=[make_event() for _ in range(20)]) for i in range(1, 31))
        valid_acks.extend(stub.StreamUsage(batches, timeout=60))

    worker = threading.Thread(target=valid_stream)
    worker.start()
    rng = random.Random(7)
    template = pb.UsageBatch(batch_id="m", sequence=1, events=[make_event() for _ in range(5)]).SerializeToString()
    stored_by_mutants = 0
    for round_ in range(150):
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400))) if round_ % 2 else _mutate(template, rng)
        try:
            for ack in raw_call(iter([payload]), timeout=20):
                stored_by_mutants += ack.events_stored
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT), exc
    worker.join()
    assert [a.status for a in valid_acks] == [pb.BatchAck.STATUS_STORED] * 30
    assert sum(a.events_stored for a in valid_acks) == 600
    assert count_rows(aggregator) == 600 + stored_by_mutants  # mutants that still parse and validate are real events
    assert aggregator.readiness()[0]
    channel.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_validation_never_raises_anything_but_invalid_on_parsed_garbage(data: bytes) -> None:
    try:
        event = pb.UsageEvent.FromString(data)
    except Exception:
        return  # not a protobuf: gRPC refuses it before validation
    try:
        validate_event(event, 1_800_000_000_000)
    except Invalid:
        pass
