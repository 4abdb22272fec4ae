"""Stored reconciliation runs in the console (migration 0022): history, a run's page, its CSV, who may see it.

A run uploaded in the console is evidence: it is in the store, so it is still
there after a restart, for every finance user and admin; viewers are refused
even with its URL. Hostile uploads are refused whole and store nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.console_site import Running, browser_sign_in, shot, start, table_rows

from ai_chargeback_aggregator.console import reconciliation
from ai_chargeback_aggregator.console.page_runner import PageRunner
from ai_chargeback_aggregator.server.app import Aggregator

EXPORTS = Path(__file__).resolve().parents[1] / "analytics" / "governance" / "exports"
USAGE = EXPORTS / "openai_usage_api.json"
COSTS = EXPORTS / "anthropic_cost_report.json"


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def upload(client: httpx.Client, *files: Path, data: bytes | None = None) -> httpx.Response:
    token = csrf_of(client.get("/reconcile").text)
    parts = [("exports", (f.name, data if data is not None else f.read_bytes(), "application/json")) for f in files]
    return client.post("/reconcile", files=parts, data={"csrf": token})


def run_id_of(answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text[:500]
    found = re.search(r"run=([0-9TZ-]+[0-9a-f]+)$", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def stored_runs(running: Running) -> int:
    _, rows = running.aggregator.store.query("SELECT count() FROM chargeback.reconcile_runs")
    return int(rows[0][0])


def listed(client: httpx.Client, **params: str) -> list[str]:
    page = client.get("/reconcile", params=params)
    assert page.status_code == 200, page.text[:500]
    return re.findall(r'data-col="run_id" data-value="([^"]+)"', page.text)


def csv_rows(answer: httpx.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


def test_a_stored_run_survives_a_restart_on_the_same_store(tmp_path: Path) -> None:
    first = start(tmp_path)
    try:
        fin = first.client("fin")
        run_id = run_id_of(upload(fin, USAGE))
        before = csv_rows(fin.get("/reconcile", params={"run": run_id, "download": "lines"}))
        assert before
    finally:
        first.aggregator.stop(grace_s=2)
    # A new aggregator process on the same store: nothing of the first one's memory is left.
    again = Aggregator(first.settings)
    again.start()
    try:
        restarted = Running(again, first.settings, f"http://127.0.0.1:{again.http.port}", first.first, first.last, tmp_path)
        for user in ("fin", "root"):
            client = restarted.client(user)
            assert listed(client) == [run_id]
            page = client.get("/reconcile", params={"run": run_id})
            assert page.status_code == 200 and f'data-run="{run_id}"' in page.text
            assert csv_rows(client.get("/reconcile", params={"run": run_id, "download": "lines"})) == before
    finally:
        again.stop(grace_s=2)


def test_history_newest_first_and_the_same_export_is_recognised(running: Running) -> None:
    fin = running.client("fin")
    once = run_id_of(upload(fin, USAGE))
    other = run_id_of(upload(running.client("root"), COSTS))
    twice = run_id_of(upload(fin, USAGE))
    assert len({once, other, twice}) == 3  # the same file again is a new run, at a new time
    assert listed(fin)[:3] == [twice, other, once]
    page = fin.get("/reconcile", params={"run": twice}).text
    # ... that says which earlier run read the very same bytes, and shows the hash.
    assert 'data-same-files="1"' in page and f"run={once}" in page and f"run={other}" not in page
    sources = csv_rows(fin.get("/reconcile", params={"run": twice, "download": "sources"}))
    assert sources == [{"name": USAGE.name, "format": "openai-usage", "bytes": str(USAGE.stat().st_size),
                        "sha256": hashlib.sha256(USAGE.read_bytes()).hexdigest()}]  # fmt: skip
    runs = csv_rows(fin.get("/reconcile", params={"download": "runs"}))
    assert [r["run_id"] for r in runs][:3] == [twice, other, once] and runs[0]["ran_by"] == "fin" and runs[1]["ran_by"] == "root"


def test_history_pages(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    fin = running.client("fin")
    for _ in range(3):
        run_id_of(upload(fin, USAGE))
    monkeypatch.setattr(reconciliation, "RUNS_PER_PAGE", 2)
    first, second = listed(fin), listed(fin, page="2")
    assert len(first) == 2 and len(second) >= 1 and not set(first) & set(second)
    assert 'rel="next"' in fin.get("/reconcile").text
    assert fin.get("/reconcile", params={"page": "0"}).status_code == 400
    assert fin.get("/reconcile", params={"page": "x"}).status_code == 400


def test_run_lines_are_the_stored_lines_with_reasons(running: Running) -> None:
    fin = running.client("fin")
    run_id = run_id_of(upload(fin, USAGE))
    lines = csv_rows(fin.get("/reconcile", params={"run": run_id, "download": "lines"}))
    _, stored = running.aggregator.store.query(
        "SELECT day, model, status, detail FROM chargeback.reconcile_lines WHERE run_id = {r:String} AND section = 'lines' ORDER BY line_no",
        {"r": run_id})  # fmt: skip
    assert [(r["day"], r["model"], r["status"], r["detail"]) for r in lines] == [(d.isoformat(), m, s, t) for d, m, s, t in stored]
    assert all(r["detail"] for r in lines if r["status"] != "matched")  # every mismatch says why


def test_viewers_are_refused_a_run_even_with_its_url(running: Running) -> None:
    run_id = run_id_of(upload(running.client("fin"), USAGE))
    for user in ("pay", "acme"):
        client = running.client(user)
        for params in ({"run": run_id}, {"run": run_id, "download": "lines"}, {"download": "runs"}, {}):
            answer = client.get("/reconcile", params=params)
            assert answer.status_code == 403, (user, params)
            assert run_id not in answer.text
    # Signed out: sign in first, never the run.
    anonymous = running.client().get("/reconcile", params={"run": run_id, "download": "lines"})
    assert anonymous.status_code == 401 and run_id not in anonymous.text
    fin = running.client("fin")
    assert fin.get("/reconcile", params={"run": "20990101T000000Z-00000000"}).status_code == 404
    assert fin.get("/reconcile", params={"run": "../../etc"}).status_code == 400


def test_hostile_uploads_store_nothing(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    fin = running.client("fin")
    before = stored_runs(running)
    bad = upload(fin, USAGE, data=b"{not an export")
    assert bad.status_code == 400 and "unrecognized provider export" in bad.text
    truncated = upload(fin, USAGE, data=USAGE.read_bytes()[: USAGE.stat().st_size // 2])
    assert truncated.status_code == 400
    binary = upload(fin, USAGE, data=bytes(range(256)) * 64)
    assert binary.status_code == 400
    monkeypatch.setattr(reconciliation, "MAX_UPLOAD_BYTES", 1024)
    big = upload(fin, USAGE)
    assert big.status_code == 400 and "larger than" in big.text
    assert stored_runs(running) == before


def test_governance_links_the_latest_verdict_per_provider(running: Running) -> None:
    fin = running.client("fin")
    run_id = run_id_of(upload(fin, USAGE))
    page = fin.get("/governance", params=running.period).text
    card = page[page.index('data-table="reconciliation"'):]
    assert re.search(r'data-col="provider" data-value="openai"', card) and f"/reconcile?run={run_id}" in card
    acme = running.client("acme").get("/governance", params={**running.period, "tenant": "acme"})
    assert acme.status_code == 200 and 'data-table="reconciliation"' not in acme.text


def test_upload_and_history_in_the_browser(running: Running, page: Any) -> None:
    browser_sign_in(page, running.base, "fin")
    page.goto(f"{running.base}/reconcile")
    page.get_by_label("Provider exports").set_input_files(str(USAGE))
    page.get_by_role("button", name="Reconcile").click()
    page.wait_for_selector("[data-run]")
    run_id = page.locator("[data-run]").get_attribute("data-run")
    assert page.locator("[data-verdict]").count() == 1 and table_rows(page, "lines")
    shot(page, "reconcile-run")
    with page.expect_download() as lines:
        page.locator("[data-csv=lines]").click()
    assert Path(lines.value.path()).read_text().startswith("day,provider,model,account,status,")
    page.get_by_role("link", name="All runs").click()
    assert table_rows(page, "runs")[0]["run_id"] == run_id
    shot(page, "reconcile-history")


def test_history_and_run_pages_read_a_few_run_rows(running: Running) -> None:
    """Speed without timing: the history is one query over run rows, a run three, whatever the events hold."""
    fin = running.client("fin")
    run_id = run_id_of(upload(fin, USAGE))
    console = running.aggregator.console
    shared = console.runner
    console.runner = PageRunner(shared.inner, shared=False)  # each page's own count, nothing kept from earlier ones
    seen: list[str] = []
    inner_query = shared.inner.query

    def spy(sql: str, params: Any = None) -> Any:
        seen.append(sql)
        return inner_query(sql, params)

    console.runner.inner.query = spy  # type: ignore[method-assign]
    try:
        for params, most in (({}, 1), ({"run": run_id}, 3), ({"run": run_id, "download": "lines"}, 3)):
            seen.clear()
            answer = fin.get("/reconcile", params=params)
            assert answer.status_code == 200
            assert 0 < len(seen) <= most, (params, seen)
            assert not any("usage_events" in sql for sql in seen), seen
    finally:
        del console.runner.inner.query
        console.runner = shared
