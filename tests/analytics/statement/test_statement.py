"""`chargeback statement`: the HTML page rendered in headless Chromium, its figures checked against `chargeback report`.

One seeded month (several teams, apps and models; cached, cache-write and
reasoning tokens; one unpriced model; an app name full of markup) feeds a
showback and a chargeback statement for one team. Chromium takes a screenshot
(it must show a page, and the charts' colours) and dumps the rendered DOM, whose
``data-*`` figures must be the report's own.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support import png
from support.aggregator_fixtures import free_port
from support.seed import day_start, random_events, recent_day, seeded_store, store_dsn, usage_event

from ai_chargeback_aggregator.cli.main import main
from ai_chargeback_proto import pb

TEAM = "payments"
ODD_APP = '<b class="x">tools</b> & "co"'  # must arrive as text, never as markup
UNPRICED_MODEL = "llama-internal"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")  # fmt: skip
WINDOW = (1280, 2000)
CHROMIUM_TIMEOUT_S = 60
ALLOCATION = """
platform_fee:
  - effective_from: 2020-01-01
    per_request_usd: "0.0004"
    uplift_percent: "3"
unattributed:
  strategy: pro_rata
"""


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (str(p) if (p := Path("/usr/bin/chromium")).exists() else None)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ a small DOM from Chromium's --dump-dom


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts) + "".join(c.text for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str | None) -> list[Node]:
        """Elements with this tag (any if None) whose attributes have these values (None: present, any value)."""
        found = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            if all((name.replace("_", "-") in node.attrs) if value is None else node.attrs.get(name.replace("_", "-")) == value
                   for name, value in attrs.items()):  # fmt: skip
                found.append(node)
        return found

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class DomBuilder(HTMLParser):
    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text_parts.append(data)


def parse_dom(text: str) -> Node:
    builder = DomBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


# ------------------------------------------------------------------ one seeded month, two statements, Chromium


@dataclass
class Rendered:
    first: date
    last: date
    code: int
    html: str
    dom: Node
    screenshot: Path | None
    by_app: dict[str, Any]
    by_model: dict[str, Any]
    by_team: dict[str, Any]
    store: list[str]
    seconds: dict[str, float] = field(default_factory=dict)


def chromium(binary: str, html: Path, work: Path, *, screenshot: bool) -> subprocess.Popen[str]:
    name = "shot" if screenshot else "dom"
    argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={work / f'profile-{name}'}", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    argv += [f"--screenshot={work / 'statement.png'}"] if screenshot else ["--dump-dom"]
    return subprocess.Popen([*argv, html.resolve().as_uri()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=work)


def seed_month(tmp: Path) -> tuple[date, date]:
    first = recent_day(30)  # the store accepts 35 days back
    days = 28
    rng = random.Random(11)
    with seeded_store(tmp) as seed:
        events = random_events(1500, first=first, days=days, rng=rng)
        for event in events:
            if event.team == TEAM and rng.random() < 0.1:
                event.team_source = pb.IDENTITY_SOURCE_HEADER  # a trusted header named the team
        events += [
            usage_event(day_start(first + timedelta(days=d)) + timedelta(hours=9), team=TEAM, app="checkout", provider="vllm",
                        api_family="openai.chat", requested_model=UNPRICED_MODEL, served_model=UNPRICED_MODEL,
                        input_tokens=900, cached_input_tokens=0, output_tokens=100)
            for d in (3, 17)
        ]  # fmt: skip
        events.append(usage_event(day_start(first + timedelta(days=20)) + timedelta(hours=2), team=TEAM, app=ODD_APP))
        # Requests of the team no route tag named an app: the unattributed app line, allocated within the team in chargeback.
        events += [usage_event(day_start(first + timedelta(days=d)) + timedelta(hours=5), team=TEAM, app="",
                               app_source=pb.IDENTITY_SOURCE_NONE, requested_model="gpt-4o", served_model="gpt-4o-2024-08-06")
                   for d in (1, 2, 8)]  # fmt: skip
        seed.insert(events)
        seed.build_rollups()
    return first, first + timedelta(days=days - 1)


def render(tmp: Path, first: date, last: date, mode: str, binary: str | None) -> Rendered:
    store = ["--store-dsn", store_dsn(tmp)]
    period = ["--from", first.isoformat(), "--to", last.isoformat()]
    options = ["--mode", mode, "--config", str(tmp / "allocation.yaml")]
    out = tmp / f"{mode}.html"
    code, _, err = run_cli("statement", "--team", TEAM, *period, *options, "--out", str(out), *store)
    assert out.exists(), err

    reports = {}
    for by in ("app", "model", "team"):
        team = [] if by == "team" else ["--team", TEAM]
        report_code, text, report_err = run_cli("report", "--by", by, *team, *period, *options, "--format", "json", *store)
        assert report_code in (0, 1), report_err
        reports[by] = json.loads(text)

    html = out.read_text(encoding="utf-8")
    screenshot, dom_text = None, html
    if binary is not None:
        work = tmp / f"chromium-{mode}"
        work.mkdir()
        shot = chromium(binary, out, work, screenshot=True) if mode == "showback" else None
        dom = chromium(binary, out, work, screenshot=False)
        dom_text, _ = dom.communicate(timeout=CHROMIUM_TIMEOUT_S)
        assert dom.returncode == 0, "chromium --dump-dom failed"
        if shot is not None:
            shot.communicate(timeout=CHROMIUM_TIMEOUT_S)
            assert shot.returncode == 0, "chromium --screenshot failed"
            screenshot = work / "statement.png"
    return Rendered(first, last, code, html, parse_dom(dom_text), screenshot, reports["app"], reports["model"], reports["team"], store)


@pytest.fixture(scope="module")
def statements(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("CHARGEBACK_SQL_TOKEN", raising=False)
    monkeypatch.setenv("CHARGEBACK_AGGREGATOR_URL", "")
    monkeypatch.setenv("CHARGEBACK_HTTP_LISTEN", f"127.0.0.1:{free_port()}")  # where no aggregator answers
    tmp = tmp_path_factory.mktemp("statement")
    (tmp / "allocation.yaml").write_text(ALLOCATION)
    try:
        first, last = seed_month(tmp)
        return {mode: render(tmp, first, last, mode, binary) for mode in ("showback", "chargeback")}
    finally:
        monkeypatch.undo()


def totals_in_dom(dom: Node) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in dom.find_all(data_total=None):
        found.setdefault(node.attrs["data-total"], set()).add(node.attrs["data-value"])
    return found


def cents(text: str) -> int:
    return int(Decimal(text) * 100)


def cell_value(row: Node, column: str) -> Decimal:
    return Decimal(row.find_all("td", data_col=column)[0].attrs["data-value"])


# ------------------------------------------------------------------ tests


def test_chromium_renders_a_page_with_charts_in_the_screenshot(statements: dict[str, Rendered]) -> None:
    shot = statements["showback"].screenshot
    assert shot is not None and shot.exists()
    assert shot.stat().st_size > 50_000  # a blank 1280x2000 page compresses to a few kB
    image = png.read(shot)
    assert (image.width, image.height) == WINDOW
    pixels = image.width * image.height
    background = image.count((255, 255, 255)) + image.count((0xEE, 0xF1, 0xF5))  # the sheet and the page around it
    assert pixels - background > pixels // 10, "mostly blank screenshot"
    # Painted, not just present in the DOM: the first app's bar colour and the UNPRICED red.
    assert image.count((0x00, 0x72, 0xB2)) > 2_000
    assert image.count((0xB9, 0x1C, 0x1C)) > 200


def test_charts_are_in_the_rendered_dom(statements: dict[str, Rendered]) -> None:
    s = statements["showback"]
    dom = s.dom
    daily = dom.find_all("svg", data_chart="daily")
    assert len(daily) == 1
    days = daily[0].find_all("g", data_day=None)
    assert [d.attrs["data-day"] for d in days] == [(s.first + timedelta(days=i)).isoformat() for i in range((s.last - s.first).days + 1)]
    assert len(daily[0].find_all("rect", **{"class": "bar"})) > 20
    assert sum(cents(d.attrs["data-value"]) for d in days) == cents(s.by_app["totals"]["list_cost"])  # days add up to the total
    assert sum(int(d.attrs["data-events"]) for d in days) == s.by_app["totals"]["events"]

    for by, report in (("app", s.by_app), ("model", s.by_model)):
        chart = dom.find_all("svg", data_chart=by)
        assert len(chart) == 1
        rows = {g.attrs["data-key"]: g for g in chart[0].find_all("g", **{"class": "row"})}
        assert set(rows) == {line["key"] for line in report["lines"]}
        for line in report["lines"]:
            assert rows[line["key"]].attrs["data-value"] == line["list_cost"]
            assert rows[line["key"]].attrs["data-flag"] == line["flag"]
        assert len(chart[0].find_all("rect", **{"class": "bar"})) >= len(report["lines"]) - 1  # an unpriced line may have no bar
        if by == "model":
            assert rows[UNPRICED_MODEL].attrs["data-flag"] == "UNPRICED"

    mix = {node.attrs["data-source"]: int(node.attrs["data-requests"]) for node in dom.find_all("tr", data_attribute="team")[0].find_all("span", data_source=None)}
    assert set(mix) == {"consumer", "header"} and sum(mix.values()) == s.by_app["totals"]["events"]


def test_totals_are_the_reports_totals(statements: dict[str, Rendered]) -> None:
    for mode, s in statements.items():
        totals = s.by_app["totals"]
        found = totals_in_dom(s.dom)
        money = ("model_cost", "platform_fee", "total") if mode == "chargeback" else ("list_cost",)
        for column in ("events", "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_tokens", *money):
            assert found.get(column) == {str(totals[column])}, (mode, column)
        # The table's total row and the visible text say the same.
        footer = s.dom.find_all("tr", data_row="total")[0]
        for column in money:
            cell = footer.find_all("td", data_col=column)[0]
            assert cell.attrs["data-value"] == totals[column] and cell.text.replace(",", "") == totals[column]
        # The same usage as the team's line of the unfiltered report by team.
        team_line = next(line for line in s.by_team["lines"] if line["key"] == TEAM)
        for column in ("events", "input_tokens", "output_tokens", "reasoning_tokens"):
            assert team_line[column] == totals[column]
    assert statements["showback"].by_app["totals"]["cost_exact"] == statements["chargeback"].by_app["totals"]["model_cost_exact"]


def test_lines_add_up_to_the_app_lines_and_the_total(statements: dict[str, Rendered]) -> None:
    usage = ("events", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
    # Chargeback (pro rata) moves the unattributed app's charges to the team's other apps in the report by app;
    # the table shows each app's own usage and cost, with the same totals.
    assert any(line["note"] for line in statements["chargeback"].by_app["lines"])
    for mode, s in statements.items():
        money = ("model_cost", "platform_fee", "total") if mode == "chargeback" else ("list_cost",)
        report_apps = {line["label"]: line for line in s.by_app["lines"]}
        apps = s.dom.find_all("tr", data_row="app")
        assert {a.attrs["data-app"] for a in apps} == set(report_apps) and "(unattributed)" in report_apps
        lines = s.dom.find_all("tr", data_row="line")
        for app in apps:
            mine = [line for line in lines if line.attrs["data-app"] == app.attrs["data-app"]]
            line = report_apps[app.attrs["data-app"]]
            moved = bool(line.get("note")) or line.get("allocated_in", "0.00") != "0.00"
            for column in (*usage, *money):
                assert sum(cell_value(row, column) for row in mine) == cell_value(app, column), (mode, app.attrs["data-app"], column)
                if column in usage or not moved:
                    assert cell_value(app, column) == Decimal(line[column]), (mode, app.attrs["data-app"], column)
        for column in (*usage, *money):
            assert sum(cell_value(app, column) for app in apps) == Decimal(s.by_app["totals"][column])
        handles = [line.attrs["data-handle"] for line in lines]
        assert all(h.startswith("cb1.") for h in handles) and len(set(handles)) == len(handles)


def test_unpriced_usage_is_flagged(statements: dict[str, Rendered]) -> None:
    s = statements["showback"]
    assert s.code == 1  # like `chargeback report`: unpriced usage present
    alert = s.dom.find_all("section", data_section="unpriced")
    assert len(alert) == 1 and "UNPRICED" in alert[0].text and UNPRICED_MODEL in alert[0].text
    found = totals_in_dom(s.dom)
    assert found["unpriced_events"] == {str(s.by_app["totals"]["unpriced_events"])} == {"2"}
    flagged = [row for row in s.dom.find_all("tr", data_row="line") if "unpriced" in row.classes()]
    assert [row.attrs["data-model"] for row in flagged] == [UNPRICED_MODEL]


def test_data_is_escaped_and_the_page_is_self_contained(statements: dict[str, Rendered]) -> None:
    s = statements["showback"]
    assert not s.dom.find_all("b", **{"class": "x"}), "an app name became markup"
    assert any(row.attrs["data-app"] == ODD_APP for row in s.dom.find_all("tr", data_row="app"))
    assert ODD_APP in s.dom.text
    for tag in ("script", "link", "img", "iframe", "object"):
        assert not s.dom.find_all(tag), tag
    lowered = s.html.lower()
    assert "http://" not in lowered.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in lowered
    assert "@import" not in lowered and "url(" not in lowered


def test_a_line_handle_explains_exactly_that_line(statements: dict[str, Rendered]) -> None:
    s = statements["showback"]
    line = next(row for row in s.dom.find_all("tr", data_row="line") if row.attrs["data-model"] == UNPRICED_MODEL)
    code, out, err = run_cli("explain", line.attrs["data-handle"], "--format", "json", *s.store)
    assert code == 0, err
    explained = json.loads(out)
    assert explained["summary"]["events"] == 2
    assert {e["team"] for e in explained["events"]} == {TEAM} and {e["app"] for e in explained["events"]} == {"checkout"}


def test_chargeback_shows_the_fee_and_the_teams_share_of_unattributed_usage(statements: dict[str, Rendered]) -> None:
    s = statements["chargeback"]
    totals = s.by_app["totals"]
    assert Decimal(totals["platform_fee"]) > 0
    team_line = next(line for line in s.by_team["lines"] if line["key"] == TEAM)
    assert Decimal(team_line["allocated_in"]) > 0  # pro rata: the team takes a share of the unattributed line
    fields = {node.attrs["data-field"]: node.attrs.get("data-value") for node in s.dom.find_all(data_field=None)}
    assert fields["charged"] == team_line["total"]
    assert fields["allocated_from_unattributed"] == team_line["allocated_in"]
    rounding = fields.get("rounding") or "0.00"
    assert cents(totals["total"]) + cents(team_line["allocated_in"]) + cents(rounding) == cents(team_line["total"])
    assert abs(cents(rounding)) <= 2


def test_finer_lines_get_cents_that_add_up_to_their_line() -> None:
    from ai_chargeback_aggregator.analytics.statement.data import round_into

    # Three model lines of exactly half a cent under an app line of 0.015 (0.02 rounded half up):
    # rounded one by one they would say 0.03.
    rows = [{"list_cost_exact": "0.005"} for _ in range(3)]
    round_into(rows, {"list_cost": "0.02"}, (("list_cost", "list_cost_exact"),))
    assert [row["list_cost"] for row in rows] == ["0.01", "0.01", "0.00"]
    rows = [{"model_cost_exact": "0.005", "platform_fee_exact": "0.0049"} for _ in range(2)]
    round_into(rows, {"model_cost": "0.01", "platform_fee": "0.01"}, (("model_cost", "model_cost_exact"), ("platform_fee", "platform_fee_exact")))
    assert [(row["model_cost"], row["platform_fee"], row["total"]) for row in rows] == [("0.01", "0.01", "0.02"), ("0.00", "0.00", "0.00")]
