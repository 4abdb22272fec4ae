"""A partial flush is taken once batches stop coming (ingest/arrivals.py), not only when the interval is out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.aggregator_fixtures import make_event
from support.waiting import wait_until

from ai_chargeback_aggregator import metrics
from ai_chargeback_aggregator.ingest.admission import admit
from ai_chargeback_aggregator.ingest.arrivals import GAP_WEIGHT, QUIET_GAPS, QUIET_MIN_S, Arrivals
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

INTERVAL_S = 600.0  # far longer than any of these tests waits


def flushes(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("chargeback_flushes_total", {"reason": reason}) or 0.0


def batch(number: int, events: int = 2) -> pb.UsageBatch:
    return pb.UsageBatch(batch_id=f"b{number}", sender_id="node-a", sequence=number + 1,
                         events=[make_event(kong_request_id=f"{number}-{i}") for i in range(events)])  # fmt: skip


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    store = Store(f"chdb://{tmp_path}")
    store.migrate()
    writer = Writer(store, flush_interval_ms=int(INTERVAL_S * 1000), enrich=Pricer().enrich)
    writer.start()
    yield writer
    writer.stop(drain_timeout_s=30)
    store.close()


# -- the rule, on a clock of its own ---------------------------------------------------


def test_before_any_batch_nothing_is_overdue() -> None:
    assert Arrivals(1.0).quiet_at() == float("inf")


def test_batches_a_flush_interval_apart_wait_out_the_interval() -> None:
    """A gateway sending once per interval: each batch still waits for company, as before."""
    arrivals = Arrivals(1.0)
    for second in range(50):
        arrivals.arrived(100.0 + second)
    assert arrivals.quiet_at() - 149.0 >= QUIET_GAPS * 1.0 * 0.99


def test_a_burst_is_overdue_soon_after_its_last_batch() -> None:
    arrivals = Arrivals(1.0)
    at = 100.0
    for _ in range(60):
        at += 0.002
        arrivals.arrived(at)
    assert arrivals.quiet_at() == pytest.approx(at + QUIET_MIN_S)


def test_a_long_silence_counts_as_one_interval_and_the_average_recovers() -> None:
    arrivals = Arrivals(1.0)
    arrivals.arrived(0.0)
    arrivals.arrived(3600.0)  # an hour without traffic
    assert arrivals.usual_gap_s == pytest.approx(1.0)
    arrivals.arrived(3600.01)
    assert arrivals.usual_gap_s == pytest.approx(1.0 + GAP_WEIGHT * (0.01 - 1.0))


def test_a_clock_that_steps_back_counts_as_no_gap() -> None:
    arrivals = Arrivals(1.0)
    arrivals.arrived(10.0)
    arrivals.arrived(9.0)
    assert arrivals.usual_gap_s == pytest.approx(1.0 - GAP_WEIGHT)


# -- the writer, on the real store -----------------------------------------------------


def test_the_tail_of_a_burst_is_stored_without_waiting_out_the_interval(writer: Writer) -> None:
    now = int(time.time() * 1000)
    before = flushes("quiet")
    tickets = [writer.submit(admit(batch(0), now, store_checks=True))]
    wait_until(lambda: writer._wakes_at < float("inf"))  # the writer waits, planning to look again in 600 s
    tickets += [writer.submit(admit(batch(b), now, store_checks=True)) for b in range(1, 60)]
    for ticket in tickets:
        assert ticket.wait(30), "a burst's last batches waited for the interval"
    assert sum(t.outcome.stored for t in tickets) == 120
    assert flushes("quiet") > before


def test_a_lone_batch_still_waits_for_company(writer: Writer) -> None:
    before = flushes("quiet")
    ticket = writer.submit(admit(batch(0), int(time.time() * 1000), store_checks=True))
    assert not ticket.wait(1.0)  # no history of arrivals: the interval applies
    second = writer.submit(admit(batch(1), int(time.time() * 1000), store_checks=True))
    assert not second.wait(0.5)
    assert flushes("quiet") == before
    assert writer.pending_events == 4
