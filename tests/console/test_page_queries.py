"""How many queries each page sends to the store, read from its Server-Timing header.

The store's time per query, not the console's code, sets a page's server time
(docs/console.md, "Speed"), so each page is held to a number of queries. The
counts come from the console's runner (console/page_runner.py); a page that
starts asking per app, per day or per report again fails here.
"""

from __future__ import annotations

import re

import pytest
from support.console_site import Running

# page -> (path, query string beyond the period, most queries it may send)
PAGES = {
    "overview": ("/", {}, 7),  # plan, usage by team, by tenant, per day, 3 x what the period lacks
    # plan, usage by app, by model, apps x models (one query, not one per app), per day, 3 x lacks, budgets
    "team": ("/team", {"team": "payments"}, 9),
    "team_chargeback": ("/team", {"team": "payments", "mode": "chargeback"}, 10),  # + the team's line of the report by team
    "teams": ("/team", {}, 5),
}


def store_queries(timing: str) -> tuple[int, int]:
    found = re.search(r'store;dur=[0-9.]+;desc="(\d+) queries, (\d+) reused"', timing)
    assert found, timing
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_sends_at_most_its_queries(running: Running, name: str) -> None:
    path, query, most = PAGES[name]
    client = running.client("fin")
    try:
        answer = client.get(path, params={**running.period, **query})
    finally:
        client.close()
    assert answer.status_code == 200, answer.text
    sent, reused = store_queries(answer.headers["server-timing"])
    assert 0 < sent <= most, f"{name} sent {sent} queries (reused {reused}); at most {most}"
