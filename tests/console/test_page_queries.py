"""How many queries each page sends to the store, read from its Server-Timing header; answers kept while the store is unchanged.

The store's time per query, not the console's code, sets a page's server time
(docs/console.md, "Speed"), so each page is held to a number of queries. The
counts come from the console's runner (console/page_runner.py); a page that
starts asking per app, per day or per report again fails here. A page asked
again on an unchanged store sends only the change marker; a new event shows on
the next page, and again once the rollups have taken it in.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from support.console_site import Running
from support.seed import admitted_as_is, day_start, usage_event

from ai_chargeback_aggregator.analytics.reports import Handle
from ai_chargeback_aggregator.console import app as app_module
from ai_chargeback_aggregator.console.access import parse_view
from ai_chargeback_aggregator.console.page_runner import PageRunner

# page -> (path, query string beyond the period, most queries it may send, with nothing kept from earlier pages)
PAGES = {
    "overview": ("/", {}, 7),  # plan, usage by team, by tenant, per day, 3 x what the period lacks
    # plan, usage by app, by model and apps x models (one query, not one per app nor one more for the model lines),
    # per day, 3 x lacks, budgets
    "team": ("/team", {"team": "payments"}, 8),
    "team_chargeback": ("/team", {"team": "payments", "mode": "chargeback"}, 9),  # + the team's line of the report by team
    "teams": ("/team", {}, 5),
    # plan, usage by app, by model and apps x models, per day, 3 x lacks, tenants/catalogs/price sources from the rollups;
    # the raw-event facts (identity sources, last request, last write) are an analysis, off the page's runner
    "statement": ("/statement", {"team": "payments"}, 8),
}
# plan, the line's figures per day (rollups), its first events (raw, the days holding them); the raw recount is an analysis
EXPLAIN_QUERIES = 3


def store_queries(timing: str) -> tuple[int, int]:
    found = re.search(r'store;dur=[0-9.]+;desc="(\d+) queries, (\d+) reused"', timing)
    assert found, timing
    return int(found.group(1)), int(found.group(2))


def fetch(running: Running, path: str, query: dict[str, str], **headers: str) -> tuple[str, tuple[int, int]]:
    client = running.client("fin")
    try:
        answer = client.get(path, params={**running.period, **query}, headers={k.replace("_", "-"): v for k, v in headers.items()})
    finally:
        client.close()
    assert answer.status_code == 200, answer.text
    return answer.text, store_queries(answer.headers["server-timing"])


@pytest.fixture
def per_request(running: Running) -> Iterator[None]:
    """Answers kept for one request only: each page's own count, whatever was asked before it."""
    console = running.aggregator.console
    shared = console.runner
    console.runner = PageRunner(shared.inner, shared=False)
    try:
        yield
    finally:
        console.runner = shared


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_sends_at_most_its_queries(running: Running, per_request: None, name: str) -> None:
    path, query, most = PAGES[name]
    _, (sent, reused) = fetch(running, path, query)
    assert 0 < sent <= most, f"{name} sent {sent} queries (reused {reused}); at most {most}"


def test_an_unchanged_store_answers_again_from_kept_answers_and_a_new_event_shows(running: Running) -> None:
    query = {"team": "payments", "app": "checkout"}
    first_page, (sent, _) = fetch(running, "/team", query)
    assert sent > 1
    again, (sent, reused) = fetch(running, "/team", query)
    assert sent == 1 and reused > 0, (sent, reused)  # only the change marker; the rest as kept
    assert again.count("<td") == first_page.count("<td")
    reloaded, (sent, _) = fetch(running, "/team", query, cache_control="no-cache")  # a hard reload reads the store
    assert sent > 1 and reloaded.count("<td") == first_page.count("<td")

    def requests() -> int:
        _, rows = running.aggregator.store.query(
            "SELECT count() FROM chargeback.usage_events FINAL WHERE team = 'payments' AND app = 'checkout' "
            "AND started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}",
            {"start": day_start(running.first), "end": day_start(running.last) + timedelta(days=1)},
        )  # fmt: skip
        return int(rows[0][0])

    before = requests()
    assert f">{before:,}<" in again or f">{before}<" in again
    at = day_start(running.last) + timedelta(hours=11, minutes=3)
    ticket = running.aggregator.writer.submit(admitted_as_is([usage_event(at, team="payments", app="checkout")], "kong-1"))
    assert ticket.wait(60) and ticket.outcome.stored == 1
    assert requests() == before + 1
    fresh, (sent, _) = fetch(running, "/team", query)
    assert sent > 1  # the marker changed: read afresh (the dirty hour from raw events)
    assert f">{before + 1:,}<" in fresh or f">{before + 1}<" in fresh
    running.aggregator.rollups.run_once(force=True)
    rebuilt, (sent, _) = fetch(running, "/team", query)
    assert sent > 1
    assert f">{before + 1:,}<" in rebuilt or f">{before + 1}<" in rebuilt


def test_the_drill_down_sends_at_most_its_queries(running: Running, per_request: None) -> None:
    handle = Handle.of(running.first, running.last, "team", "payments").encode()
    _, (sent, reused) = fetch(running, "/explain", {"handle": handle})
    assert 0 < sent <= EXPLAIN_QUERIES, f"explain sent {sent} queries (reused {reused}); at most {EXPLAIN_QUERIES}"


@pytest.fixture
def busy_analyses(running: Running) -> Iterator[threading.Event]:
    """The analyses' one worker held by a job until the event is set, and pages not waiting beside: raw work stays pending."""
    analyses = running.aggregator.console.analyses
    release = threading.Event()
    side_wait_s, analyses.side_wait_s = analyses.side_wait_s, 0.0
    analyses.get(("held", time.monotonic()), lambda: release.wait(60), beside=True)
    try:
        yield release
    finally:
        release.set()
        analyses.side_wait_s = side_wait_s


def wait_for(running: Running, path: str, query: dict[str, str], text: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page, _ = fetch(running, path, query)
        if text in page:
            return page
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never showed on {path}")


def test_pages_do_not_wait_for_raw_reads_and_show_them_once_done(running: Running, busy_analyses: threading.Event) -> None:
    # A handle and a statement no earlier test asked for: nothing computed yet.
    handle = Handle.of(running.first, running.last, "app", "checkout", {"team": "payments"}).encode()
    page, _ = fetch(running, "/explain", {"handle": handle})
    assert 'data-recount="ask"' in page and "being computed" not in page  # a recount is asked for, never started by a view
    assert running.aggregator.console.analyses.peek(("recount", Handle.decode(handle))) is None
    page, _ = fetch(running, "/explain", {"handle": handle, "recount": "1"})
    assert "being computed" in page and 'data-recount="matches"' not in page
    assert 'data-table="summary"' in page and 'data-table="events"' in page  # the line's totals and events: at once
    statement_query = {"team": "payments", "from": (running.first + timedelta(days=1)).isoformat()}
    statement, _ = fetch(running, "/statement", statement_query)
    assert 'data-pending="raw-facts"' in statement and 'data-attribute="team"' not in statement
    client = running.client("fin")
    try:
        download = client.get("/statement", params={**running.period, **statement_query, "download": "1"})
    finally:
        client.close()
    assert download.status_code == 200 and 'data-attribute="team"' in download.text  # the file: every fact, inline
    assert 'data-pending' not in download.text

    busy_analyses.set()
    page = wait_for(running, "/explain", {"handle": handle}, 'data-recount="matches"')  # shown to later views too
    assert 'data-table="recount"' in page
    statement = wait_for(running, "/statement", statement_query, 'data-attribute="team"')
    assert 'data-pending' not in statement
    assert statement.count('data-field="last-write"') == 1 and "being computed" not in statement


def test_the_statement_months_start_at_the_month_the_period_ends_in() -> None:
    """A period from 18 November to 1 December offers December's statement first (it once started at November)."""
    view = parse_view({"team": ["payments"], "from": ["2026-11-18"], "to": ["2026-12-01"]}, today=date(2026, 12, 8))
    months = app_module._months(view)
    assert months[:3] == ["2026-12", "2026-11", "2026-10"] and len(months) == 12
    assert app_module._months(parse_view({"team": ["t"], "from": ["2026-01-05"], "to": ["2026-01-20"]}))[:2] == ["2026-01", "2025-12"]


def test_a_merge_that_keeps_every_row_keeps_the_answers(running: Running) -> None:
    """Background merges run whenever they like; one that removes no row changes nothing a page reads."""
    store = running.aggregator.store
    parts = "SELECT count() FROM system.parts WHERE database = 'chargeback' AND table = 'usage_events' AND active"
    at = day_start(running.last) + timedelta(hours=9)
    ticket = running.aggregator.writer.submit(admitted_as_is([usage_event(at, team="merge-probe", app="probe")], "kong-1"))
    assert ticket.wait(60) and ticket.outcome.stored == 1  # a second part in that month
    running.aggregator.rollups.run_once(force=True)
    query = {"team": "payments", "app": "checkout"}
    fetch(running, "/team", query)
    _, (sent, _) = fetch(running, "/team", query)
    assert sent == 1
    before = store.query(parts)[1][0][0]
    store.command("OPTIMIZE TABLE chargeback.usage_events FINAL")
    assert store.query(parts)[1][0][0] < before  # the merge happened: fewer parts, the same rows
    _, (sent, reused) = fetch(running, "/team", query)
    assert sent == 1 and reused > 0, (sent, reused)
