"""Admission checks a batch's id, time, enum and held-text rules a column at a time (issue 20;
the store checks the rest, test_store_validation.py). It may only say "all pass" when each event alone would: one event breaking any
rule, anywhere in the batch, sends the batch to the per-event path, which names it."""

from __future__ import annotations

import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.aggregator_fixtures import make_event
from test_store_validation import broken_events, mutated_events

from ai_chargeback_aggregator.ingest.admission import admit
from ai_chargeback_aggregator.ingest.content import canonical_encoding
from ai_chargeback_aggregator.ingest.rows import KEY_TEXT, key_columns
from ai_chargeback_aggregator.ingest.validation import (
    batch_passes_admission_rules,
    batch_passes_insert_rules,
    held_texts_fit,
    passes_admission_rules,
)
from ai_chargeback_proto import limits, pb
from ai_chargeback_proto.limits import EVENT_LIMITS, Text

NOW = int(time.time() * 1000)
VALID_ID = make_event().event_id  # a canonical UUIDv7 of now


def admission_breakers() -> list[pb.UsageEvent]:
    """One event past each rule admission itself checks (the rest are the store's)."""
    earliest, latest = NOW - limits.PAST_WINDOW_MS, NOW + limits.FUTURE_SKEW_MS
    with_time = lambda ms: f"{ms:012x}"[:8] + "-" + f"{ms:012x}"[8:] + "-7000-8000-000000000000"  # noqa: E731
    # (The version nibble is replaced by position: replacing the first "-7" hit the time's digits
    # whenever they began with a 7, one run in 16, and left a valid id.)
    out = [
        make_event(event_id=VALID_ID.upper()), make_event(event_id=""), make_event(event_id=VALID_ID[:-1]),
        make_event(event_id=VALID_ID + "0"), make_event(event_id=VALID_ID[:14] + "4" + VALID_ID[15:]),
        make_event(event_id=VALID_ID + "\n" + VALID_ID),  # two valid lines in one id
        make_event(event_id=" " + VALID_ID[1:]), make_event(event_id=with_time(earliest - 1)),
        make_event(event_id=with_time(latest + 1)),
        make_event(started_at_unix_ms=0), make_event(started_at_unix_ms=earliest - 1),
        make_event(started_at_unix_ms=latest + 1), make_event(started_at_unix_ms=-5),
        make_event(observed_at_unix_ms=earliest - 1), make_event(observed_at_unix_ms=latest + 1),
        make_event(started_at_unix_ms=NOW, observed_at_unix_ms=NOW - limits.FUTURE_SKEW_MS - 1),
        make_event(usage_source=99), make_event(policy_outcome=-1), make_event(tenant_source=1000),
    ]  # fmt: skip
    for name, limit in EVENT_LIMITS.items():
        if isinstance(limit, Text) and name in KEY_TEXT:  # the texts held before the store's check
            out += [make_event(**{name: "é" * (limit.max_chars + 1)}), make_event(**{name: "x" * (limit.max_chars * 4)})]
    return out


def _with_sizes(events: list[pb.UsageEvent]) -> tuple[list[pb.UsageEvent], list[int]]:
    return events, [len(canonical_encoding(e)) for e in events]


def test_one_breaker_anywhere_fails_the_batch() -> None:
    breakers = admission_breakers()
    assert len(breakers) > 25
    rng = random.Random(7)
    for breaker in breakers:
        assert not passes_admission_rules(breaker, NOW, len(canonical_encoding(breaker))), breaker
        for position in (0, 17, 39):
            events = [make_event() for _ in range(40)]
            events[position] = breaker
            assert not batch_passes_admission_rules(*_with_sizes(events), NOW), (position, breaker)
        events = [make_event() for _ in range(rng.randrange(1, 60))] + [breaker]
        rng.shuffle(events)
        assert not batch_passes_admission_rules(*_with_sizes(events), NOW), breaker


def test_valid_batches_pass_whole() -> None:
    events = [make_event(tags={"k": "v" * 256}, identity_conflicts=["c" * 1024] * 8, service_tier="s" * 64,
                         started_at_unix_ms=NOW - limits.PAST_WINDOW_MS + 60_000, observed_at_unix_ms=0)]  # fmt: skip
    events += [make_event() for _ in range(50)]
    assert all(passes_admission_rules(e, NOW, len(canonical_encoding(e))) for e in events)
    assert batch_passes_admission_rules(*_with_sizes(events), NOW)
    assert batch_passes_admission_rules([], [], NOW)


def test_the_batch_check_agrees_with_each_event_on_mixed_batches() -> None:
    pool = admission_breakers() + broken_events() + mutated_events(300)
    rng = random.Random(20)
    disagreements = []
    for _ in range(400):
        events = rng.sample(pool, rng.randrange(1, 6)) + [make_event() for _ in range(rng.randrange(0, 30))]
        rng.shuffle(events)
        events, sizes = _with_sizes(events)
        each = all(passes_admission_rules(e, NOW, s) for e, s in zip(events, sizes))
        if batch_passes_admission_rules(events, sizes, NOW) != each:
            disagreements.append(events)
    assert not disagreements


def test_admit_quarantines_the_same_events_either_way() -> None:
    """The batch path changes nothing admit returns: a batch with a breaker is admitted event by event."""
    valid = [make_event() for _ in range(30)]
    for breaker in admission_breakers():  # the held texts' breakers too: admit checks them over the key columns
        batch = pb.UsageBatch(batch_id="b", sender_id="s", events=[*valid[:10], breaker, *valid[10:]])
        admitted = admit(batch, NOW, store_checks=True)
        assert admitted.ids == [e.event_id for e in valid]
        assert [q.event_id for q in admitted.quarantined] == [breaker.event_id[:256]]
    whole = admit(pb.UsageBatch(batch_id="b", sender_id="s", events=valid), NOW, store_checks=True)
    assert whole.ids == [e.event_id for e in valid] and not whole.quarantined
    assert bytes(whole.blob) == b"".join(canonical_encoding(e) for e in valid)


def test_held_texts_are_judged_the_same_from_the_key_columns() -> None:
    """admit reads the held texts once, for the key columns, and checks their lengths there."""
    for breaker in admission_breakers():
        if batch_passes_insert_rules([breaker], NOW):  # a held text's breaker (the rest fail before)
            assert not held_texts_fit(key_columns([make_event(), breaker])), breaker
    at_limits = [make_event(**{name: "é" * limit.max_chars}) for name, limit in EVENT_LIMITS.items()
                 if isinstance(limit, Text) and name in KEY_TEXT]  # fmt: skip
    assert held_texts_fit(key_columns(at_limits + [make_event()]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_parsed_garbage_never_passes_a_batch_that_fails_an_event(blobs: list[bytes]) -> None:
    events = []
    for blob in blobs:
        try:
            events.append(pb.UsageEvent.FromString(blob))
        except Exception:
            continue
    events += [make_event()]
    events, sizes = _with_sizes(events)
    if batch_passes_admission_rules(events, sizes, NOW):
        assert all(passes_admission_rules(e, NOW, s) for e, s in zip(events, sizes))
