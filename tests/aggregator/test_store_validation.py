"""Limits checked by the store (issue 20): the SQL condition flags every event Python's
validation rejects, and a batch admitted with the store's check stores and quarantines
exactly the rows the all-Python path does."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

from support.aggregator_fixtures import make_event
from test_protobuf_insert import varied_events

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.admission import admit
from ai_chargeback_aggregator.ingest.content import canonical_encoding, content_hash
from ai_chargeback_aggregator.ingest.protobuf_insert import INSERT_REFUSED_MARK, EmbeddedProtobufInserter, frame, structure_of
from ai_chargeback_aggregator.ingest.sql_validation import CHECKED_FIELDS, INVALID_CONDITION
from ai_chargeback_aggregator.ingest.validation import Invalid, passes_admission_rules, validate_event
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.store.clickhouse import Store, StoreError
from ai_chargeback_plugin.ids import uuid7
from ai_chargeback_proto import limits, pb
from ai_chargeback_proto.limits import EVENT_LIMITS, Count, Entries, Range, Strings, Text


def broken_events() -> list[pb.UsageEvent]:
    """One event past each limit admission leaves to the store, at the edge and far past it."""
    out = []
    for name, limit in EVENT_LIMITS.items():
        if isinstance(limit, Text):
            out += [make_event(**{name: "é" * (limit.max_chars + 1)}), make_event(**{name: "x" * (limit.max_chars * 3)})]
        elif isinstance(limit, Count):
            out += [make_event(**{name: limit.max + 1}), make_event(**{name: 2**64 - 1})]
        elif isinstance(limit, Range):
            field = pb.UsageEvent.DESCRIPTOR.fields_by_name[name]
            top = 2**32 - 1 if field.type == field.TYPE_UINT32 else 2**63 - 1
            out += [make_event(**{name: limit.high + 1}), make_event(**{name: top})]
            if limit.low > 0:
                out.append(make_event(**{name: limit.low - 1}))
        elif isinstance(limit, Strings):
            out += [make_event(**{name: ["a"] * (limit.max_items + 1)}), make_event(**{name: ["ü" * (limit.item.max_chars + 1)]})]
        elif isinstance(limit, Entries):
            value = limit.value.max + 1 if isinstance(limit.value, Count) else "v" * (limit.value.max_chars + 1)
            fine = 1 if isinstance(limit.value, Count) else "v"
            out += [make_event(**{name: {f"k{i}": fine for i in range(limit.max_entries + 1)}}),
                    make_event(**{name: {"": fine}}), make_event(**{name: {"k" * (limit.key.max_chars + 1): fine}}),
                    make_event(**{name: {"k": value}})]  # fmt: skip
    out += [make_event(input_tokens=10, cached_input_tokens=6, cache_write_input_tokens=5),
            make_event(output_tokens=5, reasoning_tokens=6)]  # fmt: skip
    return out


def mutated_events(count: int, seed: int = 20) -> list[pb.UsageEvent]:
    """Random values in every numeric and text field: mostly near the limits, on both sides."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        event = make_event()
        for name, limit in rng.sample(list(EVENT_LIMITS.items()), 4):
            if isinstance(limit, Text):
                setattr(event, name, "y" * rng.choice([0, limit.max_chars - 1, limit.max_chars, limit.max_chars + 1]))
            elif isinstance(limit, Count):
                setattr(event, name, rng.choice([0, 1, limit.max, limit.max + 1, rng.randrange(2**40)]))
            elif isinstance(limit, Range):
                setattr(event, name, rng.choice([0, limit.low, limit.high, limit.high + 1, max(limit.low - 1, 0)]))
        out.append(event)
    return out


def flagged(store: Store, events: list[pb.UsageEvent]) -> set[str]:
    inserter = EmbeddedProtobufInserter(store, "usage_events")
    payloads = [canonical_encoding(e) for e in events]
    path = inserter.write_payload(frame(payloads, [content_hash(p) for p in payloads], [1] * len(events), [0] * len(events)))
    try:
        _, rows = store.query(f"SELECT event_id FROM {inserter.source(path, structure_of(CHECKED_FIELDS))} WHERE {INVALID_CONDITION}",
                              read_only=False, settings=inserter.settings)  # fmt: skip
    finally:
        path.unlink()
    return {event_id for (event_id,) in rows}


def test_the_store_flags_every_event_python_rejects(tmp_path: Path) -> None:
    valid = varied_events() + [make_event(**{name: "x" * limit.max_chars}) for name, limit in EVENT_LIMITS.items() if isinstance(limit, Text)]
    valid.append(make_event(tags={"k" * 64: "v" * 256}, identity_conflicts=["c" * 1024] * 8))
    events = broken_events() + mutated_events(400) + valid
    assert len({e.event_id for e in events}) == len(events)
    now = int(time.time() * 1000)
    admissible = [e for e in events if passes_admission_rules(e, now, e.ByteSize())]
    rejected = set()
    for event in admissible:
        try:
            validate_event(event, now)
        except Invalid:
            rejected.add(event.event_id)
    assert len(rejected) > 60
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        found = flagged(store, admissible)
    finally:
        store.close()
    assert rejected <= found, sorted(rejected - found)[:5]
    assert not {e.event_id for e in valid} & found  # valid events are not flagged


def run_writer(store_dir: Path, batch: pb.UsageBatch, *, store_checks: bool, now_ms: int) -> dict[str, list[tuple[object, ...]]]:
    store = Store(f"chdb://{store_dir}")
    store.migrate()
    writer = Writer(store, flush_interval_ms=10, enrich=Pricer().enrich, clock_ms=lambda: now_ms)
    writer.start()
    try:
        ticket = writer.submit(admit(batch, now_ms, store_checks=store_checks))
        assert ticket.wait(60)
        # Every column, prices and their derived costs included (ingested_at is the clock's, fixed here).
        _, events = store.query("SELECT * FROM chargeback.usage_events ORDER BY event_id")
        _, quarantined = store.query("SELECT event_id, content_hash, occurred_at, field, reason, raw_event, team "
                                     "FROM chargeback.quarantined_events ORDER BY event_id")  # fmt: skip
        outcome = ticket.outcome
        rejections = sorted((q.event_id, q.field, q.reason) for q in ticket.admitted.quarantined)
        return {"events": events, "quarantined": quarantined, "rejections": rejections,  # type: ignore[dict-item]
                "outcome": [(outcome.stored, outcome.duplicates, outcome.conflicting, outcome.quarantined)]}  # fmt: skip
    finally:
        writer.stop()
        store.close()


def test_rows_are_identical_with_the_store_checking(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    left_to_store = [e for e in broken_events() if passes_admission_rules(e, now, e.ByteSize())]
    assert len(left_to_store) >= 20  # every count, range and subset rule
    events = varied_events() + left_to_store + [make_event(team="payments")] * 2  # a resend inside the batch
    events += [make_event(started_at_unix_ms=1), make_event(tenant="t" * 300)]  # caught at admission either way
    # Valid, in two-byte characters up to each text limit: the store's condition counts bytes, so
    # it flags them; Python accepts them, and they are stored all the same.
    events += at_text_limits_in_two_byte_characters()
    batch = pb.UsageBatch(batch_id="b1", sender_id="node-a", sequence=1, events=events)
    python_path = run_writer(tmp_path / "python", batch, store_checks=False, now_ms=now)
    refusals = refused_inserts()
    store_path = run_writer(tmp_path / "store", batch, store_checks=True, now_ms=now)
    # The resend inside the batch sends it down the lookup's check; without it, the insert's check refuses first.
    assert refused_inserts() == refusals
    assert python_path["outcome"][0][3] == len(left_to_store) + 2
    assert len(python_path["events"]) == len(varied_events()) + 1 + len(at_text_limits_in_two_byte_characters())
    assert python_path == store_path


def at_text_limits_in_two_byte_characters() -> list[pb.UsageEvent]:
    out = [make_event(**{name: "é" * limit.max_chars}) for name, limit in EVENT_LIMITS.items() if isinstance(limit, Text)]
    return out + [make_event(tags={"é" * 64: "é" * 256}, identity_conflicts=["ü" * 1024] * 8)]


def test_the_condition_reads_every_text_as_a_plain_string() -> None:
    """length() of a Nullable would be Nullable, and a NULL in the condition would flag nothing."""
    columns, depth, current = [], 0, ""
    for char in structure_of(CHECKED_FIELDS) + ",":  # split at the top level only: Map(String, UInt64)
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            columns.append(current.strip())
            current = ""
        else:
            current += char
    read_types = dict(column.split(" ", 1) for column in columns)
    assert read_types["tags"] == "Map(String, String)"
    for name, limit in EVENT_LIMITS.items():
        if isinstance(limit, Text):
            assert read_types[name] == "String", name


def refused_inserts() -> float:
    return metrics.REGISTRY.get_sample_value("chargeback_store_rule_check_refusals_total") or 0.0


def test_the_insert_checks_the_rules_when_every_event_is_new(tmp_path: Path) -> None:
    """The usual flush (no id twice, none stored) has its rules checked by the insert itself: one
    flagged event refuses the whole insert, and the flush then stores and quarantines exactly
    what the all-Python path does. Nothing is stored twice: a refused insert stored nothing."""
    now = int(time.time() * 1000)
    left_to_store = [e for e in broken_events() if passes_admission_rules(e, now, e.ByteSize())]
    valid = varied_events()
    events = valid + left_to_store[:3] + [make_event(team="t" * 300)]
    batch = pb.UsageBatch(batch_id="b1", sender_id="node-a", sequence=1, events=events)
    python_path = run_writer(tmp_path / "python", batch, store_checks=False, now_ms=now)
    refusals = refused_inserts()
    store_path = run_writer(tmp_path / "store", batch, store_checks=True, now_ms=now)
    assert refused_inserts() == refusals + 1
    assert python_path == store_path
    stored, duplicates, conflicting, quarantined = store_path["outcome"][0]
    assert (stored, duplicates, conflicting, quarantined) == (len(valid), 0, 0, 4)
    assert sorted(row[0] for row in store_path["events"]) == sorted(uuid.UUID(e.event_id) for e in valid)
    # A clean batch goes through the insert's check without a refusal.
    clean = pb.UsageBatch(batch_id="b2", sender_id="node-a", sequence=2, events=[make_event() for _ in range(5)])
    refusals = refused_inserts()
    assert run_writer(tmp_path / "clean", clean, store_checks=True, now_ms=now)["outcome"] == [(5, 0, 0, 0)]
    assert refused_inserts() == refusals


def test_admission_alone_keeps_the_insert_safe() -> None:
    """What the store cannot read (a malformed id, a timestamp out of range, an unknown enum)
    never reaches it, nor a text the aggregator holds before the store's check (the pricer
    caches prices by provider, model, tier and tenant). Other texts, lists and maps are the
    store's to check (the first test holds the condition to every one of them)."""
    now = int(time.time() * 1000)
    for event in (make_event(event_id="not-a-uuid"), make_event(started_at_unix_ms=now + limits.DAY_MS), make_event(usage_source=99),
                  make_event(service_tier="t" * 65), make_event(tenant="t" * 257), make_event(provider="p" * 257),
                  make_event(served_model="m" * 257), make_event(requested_model="é" * 257)):  # fmt: skip
        assert not passes_admission_rules(event, now, event.ByteSize())
    for event in (make_event(team="t" * 257), make_event(tags={"k": "v" * 257}), make_event(identity_conflicts=["x"] * 9)):
        assert passes_admission_rules(event, now, event.ByteSize())
        try:
            validate_event(event, now)
        except Invalid:
            pass
        else:
            raise AssertionError(f"{event} is valid")


def test_a_refused_insert_stores_nothing_in_any_partition(tmp_path: Path) -> None:
    """The insert's check runs before anything is written: one flagged event, last of 12,000
    spread over two months (two partitions, so two parts), and no row of the flush is stored."""
    now = int(time.time() * 1000)
    events = []
    for i in range(12_000):
        started = now - (32 * limits.DAY_MS if i % 2 else 0) - i
        events.append(make_event(event_id=uuid7(started), started_at_unix_ms=started, observed_at_unix_ms=started + 5))
    events[-1].input_tokens = limits.MAX_TOKENS + 1
    payloads = [canonical_encoding(e) for e in events]
    store = Store(f"chdb://{tmp_path}")
    try:
        store.migrate()
        inserter = EmbeddedProtobufInserter(store, "usage_events")
        path = inserter.write_payload(frame(payloads, [content_hash(p) for p in payloads], [1] * len(events), [0] * len(events)))
        try:
            inserter.insert(path, ["node-a"], now, [], [], unless=INVALID_CONDITION)
        except StoreError as exc:
            assert INSERT_REFUSED_MARK in str(exc)
        else:
            raise AssertionError("the insert was not refused")
        _, rows = store.query("SELECT count() FROM chargeback.usage_events")
        assert rows == [(0,)]
        del events[-1]  # without the flagged event, the same insert stores every row, in two partitions
        payloads.pop()
        path.unlink()
        path = inserter.write_payload(frame(payloads, [content_hash(p) for p in payloads], [1] * len(events), [0] * len(events)))
        inserter.insert(path, ["node-a"], now, [], [], unless=INVALID_CONDITION)
        path.unlink()
        _, rows = store.query("SELECT count(), uniqExact(_partition_id) FROM chargeback.usage_events")
        assert rows == [(11_999, 2)]
    finally:
        store.close()
