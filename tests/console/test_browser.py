"""The console's journeys in a real browser: Debian's headless Chromium driven by Playwright.

Each journey signs in through the form, reads what is on the page and checks
its figures against ``chargeback report --format json`` run through the same
aggregator. Screenshots are kept in test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.console_site import Running, browser_sign_in, shot, table_rows


def test_finance_sees_every_team_with_the_reports_figures(running: Running, page: Any) -> None:
    browser_sign_in(page, running.base, "fin")
    query = f"from={running.first}&to={running.last}"
    page.goto(f"{running.base}/?{query}")
    report = running.report("--by", "team")
    rows = table_rows(page, "teams")
    assert [(r["label"], r["list_cost"], r["events"]) for r in rows] == [
        (line["label"], line["list_cost"], str(line["events"])) for line in report["lines"]]
    headline = page.locator("[data-total=list_cost]").first
    assert headline.get_attribute("data-value") == report["totals"]["list_cost"]
    assert page.locator("[data-readiness]").count() == 1  # the verdict, with its reasons
    assert page.locator(".reasons li").count() >= 1
    assert page.locator("svg[data-chart=daily] g.day").count() == (running.last - running.first).days + 1
    shot(page, "finance-overview")

    page.goto(f"{running.base}/?{query}&mode=chargeback")
    charged = running.report("--by", "team", "--mode", "chargeback")
    assert [r["total"] for r in table_rows(page, "teams")] == [line["total"] for line in charged["lines"]]
    shot(page, "finance-overview-chargeback")


def test_a_team_viewer_sees_only_their_team_and_is_refused_elsewhere(running: Running, page: Any) -> None:
    browser_sign_in(page, running.base, "pay")
    page.goto(f"{running.base}/?from={running.first}&to={running.last}")
    assert "team=payments" in page.url  # landed on their own view
    assert [r["label"] for r in table_rows(page, "teams")] == ["payments"]
    report = running.report("--by", "team", "--team", "payments")
    assert table_rows(page, "teams")[0]["list_cost"] == report["lines"][0]["list_cost"]
    assert page.get_by_role("link", name="Prices").count() == 0 and page.get_by_role("link", name="Access").count() == 0
    shot(page, "viewer-overview")

    with page.expect_download() as own:
        page.locator("[data-csv=teams]").click()
    assert "payments" in Path(own.value.path()).read_text() and "search" not in Path(own.value.path()).read_text()

    answer = page.goto(f"{running.base}/team?team=search&from={running.first}&to={running.last}")
    assert answer is not None and answer.status == 403
    assert page.locator("[data-status='403']").count() == 1 and "pay may see team payments only" in page.content()
    shot(page, "viewer-refused")
    for url in (f"/team?team=search&from={running.first}&to={running.last}&download=apps",
                f"/?team=search&from={running.first}&to={running.last}&download=teams",
                f"/statement?team=search&from={running.first}&to={running.last}&download=1"):  # fmt: skip
        refused = page.request.get(running.base + url)  # the browser's own cookies
        assert refused.status == 403, url
        assert "list_cost" not in refused.text()


def test_drill_down_from_a_total_to_its_events(running: Running, page: Any) -> None:
    browser_sign_in(page, running.base, "fin")
    page.goto(f"{running.base}/team?team=payments&from={running.first}&to={running.last}")
    line = next(r for r in table_rows(page, "apps") if r["label"] == "checkout")
    page.locator("[data-table=apps] tbody tr[data-key=checkout] td[data-col=handle] a").click()
    page.wait_for_selector("[data-table=events]")
    assert "/explain?handle=cb1." in page.url
    summary = table_rows(page, "summary")[0]
    assert summary["events"] == line["events"]
    events = table_rows(page, "events")
    assert len(events) == min(int(line["events"]), 100)
    assert {e["team"] for e in events} == {"payments"} and {e["app"] for e in events} == {"checkout"}
    assert all(e["team_source"] and e["price_source"] and e["usage_source"] for e in events)  # where each figure came from
    report = running.report("--by", "app", "--team", "payments")
    assert str(next(x for x in report["lines"] if x["label"] == "checkout")["events"]) == summary["events"]
    shot(page, "drill-down")


def test_statement_page_and_download(running: Running, page: Any) -> None:
    browser_sign_in(page, running.base, "pay")
    page.goto(f"{running.base}/team?team=payments&from={running.first}&to={running.last}")
    month = running.last.strftime("%Y-%m")
    page.get_by_label("Month").select_option(month)
    with page.expect_download() as download:
        page.locator("[data-download=statement]").click()
    assert download.value.suggested_filename.startswith("statement-payments-")
    html = Path(download.value.path()).read_text()
    report = running.report_month(month, "--by", "app", "--team", "payments")
    assert 'data-statement' in html and f'data-total="list_cost" data-value="{report["totals"]["list_cost"]}"' in html

    page.get_by_role("button", name="Open statement").click()
    page.wait_for_selector("[data-statement]")
    assert page.locator("[data-field=team]").inner_text() == "payments"
    assert page.locator("[data-total=list_cost]").first.get_attribute("data-value") == report["totals"]["list_cost"]
    shot(page, "statement")


def test_keyboard_and_labels(running: Running, page: Any) -> None:
    browser_sign_in(page, running.base, "fin")
    page.goto(f"{running.base}/?from={running.first}&to={running.last}")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    unlabeled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select')]
        .filter(e => !(e.id && document.querySelector(`label[for="${e.id}"]`))).length""")
    assert unlabeled == 0
    assert page.locator("svg[role=img][aria-label]").count() >= 1


