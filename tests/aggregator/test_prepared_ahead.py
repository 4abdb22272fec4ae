"""The writer readies the next flush while the current one is in the store (ingest/ahead.py).

Real chDB store, the real writer and its preparer thread. The first flush is held in
its after-insert hook (committed, not yet acked) while the test looks at what the
preparer did with the next one, then changes that flush behind its back.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from support.aggregator_fixtures import make_event
from support.waiting import wait_until

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.admission import admit
from ai_chargeback_aggregator.ingest.protobuf_insert import PAYLOAD_DIR
from ai_chargeback_aggregator.ingest.writer import Ticket, Writer
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

BATCH = 50
PER_FLUSH = 100  # two batches


def ahead_count(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("chargeback_flushes_prepared_ahead_total", {"outcome": outcome}) or 0.0


def batches(count: int) -> list[pb.UsageBatch]:
    return [pb.UsageBatch(batch_id=f"b{b}", sender_id="node-a", sequence=b + 1,
                          events=[make_event(kong_request_id=f"{b}-{i}") for i in range(BATCH)]) for b in range(count)]  # fmt: skip


class HeldFirstFlush:
    """An after-insert hook that holds the writer after its first committed insert."""

    def __init__(self) -> None:
        self.reached, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, columns: dict[str, list[Any]]) -> None:
        self.calls += 1
        if self.calls == 1:
            self.reached.set()
            assert self.release.wait(60)


def run(tmp_path: Path, *, abandon_in_second_flush: bool) -> tuple[list[Ticket], Store, Writer, dict[str, float]]:
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    hold = HeldFirstFlush()
    writer = Writer(store, flush_interval_ms=5, flush_max_events=PER_FLUSH, enrich=Pricer().enrich, after_insert=hold)
    first_event = make_event(kong_request_id="first")
    sent = batches(8)
    sent[0].events[0].CopyFrom(first_event)
    sent[2].events[0].CopyFrom(first_event)  # a replay: flush 2 must see flush 1's commit
    before = {o: ahead_count(o) for o in ("used", "discarded")}
    now = int(time.time() * 1000)
    tickets = [writer.submit(admit(b, now, store_checks=True)) for b in sent]  # queued before the writer runs
    writer.start()
    assert hold.reached.wait(60)
    payloads = tmp_path / PAYLOAD_DIR
    wait_until(lambda: len(list(payloads.glob("*.pb"))) == 2)  # flush 1's, and flush 2's readied meanwhile
    assert not tickets[0].done.is_set()  # committed, not acked: the hook runs before the acks
    if abandon_in_second_flush:
        tickets[3].abandoned = True  # its stream gave up (answered RETRY) while flush 2 waited
    hold.release.set()
    for ticket in tickets:
        assert ticket.wait(60)
    delta = {o: ahead_count(o) - before[o] for o in before}
    return tickets, store, writer, delta


def stored_ids(store: Store) -> list[str]:
    _, rows = store.query("SELECT toString(event_id) FROM chargeback.usage_events")  # no FINAL: a second row would show
    return [r[0] for r in rows]


def test_the_next_flush_is_readied_during_the_insert_and_dedup_still_sees_the_flush_before(tmp_path: Path) -> None:
    tickets, store, writer, delta = run(tmp_path, abandon_in_second_flush=False)
    try:
        outcomes = [(t.outcome.stored, t.outcome.duplicates) for t in tickets]
        assert outcomes[2] == (BATCH - 1, 1)  # the replay of flush 1's event: a duplicate, not a second row
        assert sum(s for s, _ in outcomes) == 8 * BATCH - 1
        ids = stored_ids(store)
        assert len(ids) == len(set(ids)) == 8 * BATCH - 1
        # Flushes 2 and 3 were readied ahead; flush 4 was not: nothing queued behind it, so more
        # batches could still have joined it.
        assert delta == {"used": 2, "discarded": 0}
    finally:
        writer.stop()
        store.close()
    assert not list((tmp_path / PAYLOAD_DIR).glob("*.pb"))  # nothing left behind at stop


def test_a_batch_abandoned_after_its_flush_was_readied_is_not_written(tmp_path: Path) -> None:
    tickets, store, writer, delta = run(tmp_path, abandon_in_second_flush=True)
    try:
        assert delta["discarded"] == 1  # the readied flush no longer matched: prepared again without it
        assert tickets[3].outcome.stored == 0
        ids = set(stored_ids(store))
        assert not ids & set(tickets[3].admitted.ids)
        assert len(ids) == 7 * BATCH - 1
    finally:
        writer.stop()
        store.close()
    assert not list((tmp_path / PAYLOAD_DIR).glob("*.pb"))


def test_batches_that_arrive_during_a_write_are_readied_as_soon_as_they_fill_the_next_flush(tmp_path: Path) -> None:
    """At a start, or when traffic picks up, nothing waits behind the first flush when it is
    taken: the next flush fills up while the first is in the store, and is readied then."""
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    hold = HeldFirstFlush()
    writer = Writer(store, flush_interval_ms=5, flush_max_events=PER_FLUSH, enrich=Pricer().enrich, after_insert=hold)
    sent = batches(5)
    before = {o: ahead_count(o) for o in ("used", "discarded")}
    now = int(time.time() * 1000)
    writer.start()
    try:
        tickets = [writer.submit(admit(b, now, store_checks=True)) for b in sent[:2]]  # one flush, nothing behind
        assert hold.reached.wait(60)
        payloads = tmp_path / PAYLOAD_DIR
        assert len(list(payloads.glob("*.pb"))) == 1  # nothing readied: the next flush did not exist
        tickets += [writer.submit(admit(b, now, store_checks=True)) for b in sent[2:4]]
        time.sleep(0.2)
        assert len(list(payloads.glob("*.pb"))) == 1  # a full flush's worth, but a batch could still join it
        tickets.append(writer.submit(admit(sent[4], now, store_checks=True)))  # now it cannot: settled
        wait_until(lambda: len(list(payloads.glob("*.pb"))) == 2)  # readied while the first is held
        hold.release.set()
        for ticket in tickets:
            assert ticket.wait(60)
        assert [t.outcome.stored for t in tickets] == [BATCH] * 5
        assert {o: ahead_count(o) - before[o] for o in before} == {"used": 1, "discarded": 0}
        ids = stored_ids(store)
        assert len(ids) == len(set(ids)) == 5 * BATCH
    finally:
        hold.release.set()
        writer.stop()
        store.close()
    assert not list((tmp_path / PAYLOAD_DIR).glob("*.pb"))
