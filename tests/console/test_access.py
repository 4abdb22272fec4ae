"""Who sees what, over HTTP against a running aggregator: an adversary's tour of the console.

Forged and expired cookies, posts without CSRF tokens or from another origin,
a viewer guessing other teams' URLs, CSV links, drill-down handles and
statements, filter injection, tokens, and sessions ended by the CLI.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from support.console_site import ODD_TEAM, PASSWORDS, PROCESS_TIMEOUT_S, SQL_TOKEN, Running, console_cli, sign_in

from ai_chargeback_aggregator.analytics.reports.handle import Handle
from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.budgets import budget_status
from ai_chargeback_aggregator.budgets.definitions import parse_records
from ai_chargeback_aggregator.budgets.store import save_budgets
from ai_chargeback_aggregator.console.budgets import BudgetStatus
from ai_chargeback_aggregator.console.sessions import SESSION_COOKIE


def csv_rows(answer: httpx.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


def in_csv(text: str) -> str:
    """How a name reads in the console's CSV: formula-looking names get a leading apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


# ------------------------------------------------------------------ signing in


def test_every_page_and_download_wants_a_signed_in_user(running: Running) -> None:
    anonymous = running.client()
    for path in ("/", "/team?team=payments", "/explain?handle=x", "/governance", "/budgets", "/prices", "/access",
                 "/statement?team=payments&month=2026-01"):  # fmt: skip
        answer = anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?next="), path
    assert anonymous.get("/?download=teams").status_code == 401
    assert anonymous.get("/", headers={"authorization": "Bearer cbt_not-a-token"}).status_code == 401
    assert anonymous.get("/healthz").status_code == 200  # probes stay open


def cookie(key: bytes, payload: dict[str, object], *, age_s: float = 0) -> str:
    """A session cookie signed with the console's key, as if issued age_s ago."""

    class Issued(URLSafeTimedSerializer):
        def make_signer(self, salt=None):  # type: ignore[no-untyped-def]
            signer = super().make_signer(salt)
            signer.get_timestamp = lambda: int(time.time() - age_s)  # type: ignore[method-assign]
            return signer

    return Issued(key, salt="chargeback-console-session").dumps(payload)


def test_a_forged_or_expired_cookie_is_no_session(running: Running) -> None:
    client = running.client("fin")
    real = client.cookies[SESSION_COOKIE]
    assert client.get("/", params=running.period).status_code == 200
    payload = real.rsplit(".", 2)[0]
    other_key = cookie(b"k" * 32, {"u": "root", "v": "password", "s": "x", "st": ""})
    for forged in (real[:-2] + ("AA" if real[-2:] != "AA" else "BB"), payload + ".", "e30.x.y", other_key):
        stranger = running.client()
        stranger.cookies.set(SESSION_COOKIE, forged)
        assert stranger.get("/").status_code == 303, forged
    key = running.aggregator.console.sessions._key
    fin = running.aggregator.console.accounts.current().users["fin"]
    claims = {"u": "fin", "v": "password", "s": "s1", "st": fin.stamp(), "g": []}
    lifetime = running.settings.console_session_hours * 3600
    for age, status in ((lifetime + 60, 303), (60, 200)):  # the same claims, too old and recent: the test can fail
        holder = running.client()
        holder.cookies.set(SESSION_COOKIE, cookie(key, claims, age_s=age))
        assert holder.get("/", params=running.period).status_code == status, age
    # Right key, but a stamp from before a password change or revocation, or a role claimed in the cookie.
    for bad in ({**claims, "st": "0" * 16}, {**claims, "u": "root"}, {**claims, "v": "token"}):
        holder = running.client()
        holder.cookies.set(SESSION_COOKIE, cookie(key, bad))
        assert holder.get("/").status_code == 303, bad


def test_session_cookie_is_httponly_lax_and_scoped(running: Running) -> None:
    client = running.client()
    answer = sign_in(client, "fin", PASSWORDS["fin"])
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP from loopback; over HTTPS it is Secure (test_https_and_remote_plain_http)
    page = client.get("/", params=running.period)
    assert page.headers["cache-control"] == "no-store"
    assert "script-src" not in page.headers["content-security-policy"] and "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_https_and_remote_plain_http(running: Running) -> None:
    """Behind a TLS proxy (X-Forwarded-Proto from a trusted address) the cookie is Secure; plain HTTP from afar is refused."""
    client = running.client(headers={"x-forwarded-proto": "https"})
    form = client.get("/signin")
    login = next(h for h in form.headers.get_list("set-cookie") if h.startswith("cb_login="))
    assert "secure" in login.lower()
    # httpx keeps Secure cookies for https URLs only: carry it by hand, as the browser would over the TLS proxy.
    answer = client.post("/signin", data={"csrf": csrf_of(form.text), "username": "fin", "password": PASSWORDS["fin"]},
                         headers={"cookie": login.split(";", 1)[0]})  # fmt: skip
    assert answer.status_code == 303
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "secure" in cookie.lower()
    remote = running.client(headers={"x-forwarded-for": "203.0.113.9"})
    form = remote.get("/signin")
    assert "sign-in is refused" in form.text
    refused = remote.post("/signin", data={"csrf": csrf_of(form.text), "username": "fin", "password": PASSWORDS["fin"]})
    assert refused.status_code == 403 and SESSION_COOKIE not in refused.headers.get("set-cookie", "")


def test_state_changes_need_the_csrf_token_and_our_origin(running: Running) -> None:
    # Sign-in: the form's token is bound to a pre-session cookie.
    client = running.client()
    form = client.get("/signin")
    token = csrf_of(form.text)
    creds = {"username": "fin", "password": PASSWORDS["fin"]}
    assert client.post("/signin", data=creds).status_code == 403
    assert client.post("/signin", data={**creds, "csrf": "0" * 64}).status_code == 403
    assert client.post("/signin", data={**creds, "csrf": token}, headers={"origin": "https://evil.example"}).status_code == 403
    other = running.client()
    assert other.post("/signin", data={**creds, "csrf": token}).status_code == 403  # a token without its cookie
    assert client.post("/signin", data={**creds, "csrf": token}).status_code == 303

    # Sign-out: the token is bound to the session.
    page = client.get("/", params=running.period).text
    mine = csrf_of(page)
    theirs = csrf_of(running.client("fin").get("/", params=running.period).text)
    assert client.post("/signout", data={}).status_code == 403
    assert client.post("/signout", data={"csrf": theirs}).status_code == 403
    assert client.post("/signout", data={"csrf": mine}, headers={"origin": "http://evil.example"}).status_code == 403
    assert client.get("/", params=running.period).status_code == 200  # still signed in after every refused post
    kept = client.cookies[SESSION_COOKIE]
    assert client.post("/signout", data={"csrf": mine}).status_code == 303
    replay = running.client()
    replay.cookies.set(SESSION_COOKIE, kept)  # the cookie the browser had: void after signing out
    assert replay.get("/").status_code == 303


def test_wrong_passwords_are_throttled_and_next_stays_local(running: Running) -> None:
    users = running.settings.console_users_path
    assert console_cli(users, "users", "add", "guessed", "--role", "finance", "--password-stdin", stdin="the-right-one-1\n").returncode == 0
    client = running.client()
    for _ in range(5):
        form = client.get("/signin")
        assert client.post("/signin", data={"csrf": csrf_of(form.text), "username": "guessed", "password": "wrong-password"}).status_code == 401
    form = client.get("/signin")
    assert client.post("/signin", data={"csrf": csrf_of(form.text), "username": "guessed", "password": "the-right-one-1"}).status_code == 429
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        other = running.client()
        form = other.get("/signin", params={"next": evil})
        answer = other.post("/signin", data={"csrf": csrf_of(form.text), "username": "fin", "password": PASSWORDS["fin"], "next": evil})
        assert answer.headers["location"] == "/", evil


def test_the_cli_ends_sessions(running: Running) -> None:
    users = running.settings.console_users_path
    assert console_cli(users, "users", "add", "temp", "--role", "finance", "--password-stdin", stdin="temporary-pass-1\n").returncode == 0
    client = running.client()
    sign_in(client, "temp", "temporary-pass-1")
    assert client.get("/", params=running.period).status_code == 200
    assert console_cli(users, "users", "revoke-sessions", "temp").returncode == 0
    assert client.get("/").status_code == 303
    sign_in(client, "temp", "temporary-pass-1")
    assert console_cli(users, "users", "remove", "temp").returncode == 0
    assert client.get("/").status_code == 303
    text = (running.tmp / "console-users.yaml").read_text() if (running.tmp / "console-users.yaml").exists() else open(users).read()
    assert "$argon2id$" in text and PASSWORDS["fin"] not in text


# ------------------------------------------------------------------ a viewer's reach


def test_a_viewer_sees_only_their_team_and_guessing_is_refused(running: Running) -> None:
    pay = running.client("pay")
    landing = pay.get("/", params=running.period)
    assert landing.status_code == 303 and parse_qs(urlsplit(landing.headers["location"]).query)["team"] == ["payments"]
    overview = pay.get(landing.headers["location"])
    assert overview.status_code == 200
    teams = csv_rows(pay.get("/", params={**running.period, "team": "payments", "download": "teams"}))
    assert {row["label"] for row in teams[:-1]} == {"payments"}
    assert teams[-1]["label"] == "Total"

    for path, params in (("/", {"team": "search"}), ("/", {"tenant": "acme"}), ("/", {"team": "search", "download": "teams"}),
                         ("/team", {"team": "search"}), ("/team", {"team": "search", "download": "apps_models"}),
                         ("/statement", {"team": "search"}), ("/statement", {"team": "search", "download": "1"}),
                         ("/governance", {}), ("/prices", {}), ("/access", {}), ("/reconcile", {})):  # fmt: skip
        answer = pay.get(path, params={**running.period, **params})
        assert answer.status_code == 403, (path, params, answer.status_code)
        assert "search" not in answer.text.replace("team=search", "") or path != "/team"
    # Naming neither team nor tenant lands on their own team, keeping the other filters.
    narrowed = pay.get("/", params={**running.period, "app": "checkout"})
    assert narrowed.status_code == 303 and parse_qs(urlsplit(narrowed.headers["location"]).query) == {
        "team": ["payments"], "app": ["checkout"], "from": [running.first.isoformat()], "to": [running.last.isoformat()]}
    # The same parameter twice must not slip a second team past the check.
    assert pay.get("/", params=[("team", "payments"), ("team", "search")]).status_code == 400
    assert pay.get("/team", params=[("team", "search"), ("team", "payments")]).status_code == 400


def test_drill_down_handles_are_checked_for_what_they_open(running: Running) -> None:
    fin = running.client("fin")
    teams = csv_rows(fin.get("/", params={**running.period, "download": "teams"}))
    handles = {row["label"]: row["handle"] for row in teams if row["handle"]}
    pay = running.client("pay")
    assert pay.get("/explain", params={"handle": handles["payments"]}).status_code == 200
    assert pay.get("/explain", params={"handle": handles["search"]}).status_code == 403
    assert pay.get("/explain", params={"handle": handles["search"], "download": "events"}).status_code == 403
    # Hand-made handles: another team under a filter naming mine opens nothing of theirs.
    crafted = Handle.of(running.first, running.last, "team", "search", {"team": "payments"}).encode()
    answer = pay.get("/explain", params={"handle": crafted, "download": "events"})
    assert csv_rows(answer) == []
    for other in (Handle.of(running.first, running.last, "app", "checkout").encode(),
                  Handle.of(running.first, running.last, "consumer", "c-0001").encode(),
                  Handle.of(running.first, running.last, "team", "", {"tenant": "acme"}).encode()):  # fmt: skip
        assert pay.get("/explain", params={"handle": other}).status_code == 403
    assert pay.get("/explain", params={"handle": "cb1.not-base64!"}).status_code == 400
    assert pay.get("/explain", params={"handle": "nonsense"}).status_code == 400


def test_a_tenant_viewer_sees_every_team_of_the_tenant_and_nothing_else(running: Running) -> None:
    acme = running.client("acme")
    landing = acme.get("/", params=running.period)
    assert parse_qs(urlsplit(landing.headers["location"]).query)["tenant"] == ["acme"]
    teams = csv_rows(acme.get("/", params={**running.period, "tenant": "acme", "download": "teams"}))
    report = running.report("--by", "team", "--tenant", "acme")
    assert [(r["label"], r["list_cost"]) for r in teams[:-1]] == [(in_csv(line["label"]), line["list_cost"]) for line in report["lines"]]
    assert acme.get("/team", params={**running.period, "team": "payments", "tenant": "acme"}).status_code == 200
    assert acme.get("/team", params={**running.period, "team": "payments"}).status_code == 403  # payments in every tenant
    assert acme.get("/", params={**running.period, "tenant": "globex"}).status_code == 403
    assert acme.get("/governance", params={**running.period, "tenant": "acme"}).status_code == 200
    assert acme.get("/governance", params=running.period).status_code == 403


def test_tokens_read_their_grant_only(running: Running) -> None:
    made = console_cli(running.settings.console_users_path, "tokens", "add", "export-pay", "--role", "viewer", "--team", "payments")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cbt_") and token not in open(running.settings.console_users_path).read()
    bot = running.client(headers={"authorization": f"Bearer {token}"})
    rows = csv_rows(bot.get("/team", params={**running.period, "team": "payments", "download": "apps"}))
    assert rows
    assert bot.get("/team", params={**running.period, "team": "search", "download": "apps"}).status_code == 403
    assert bot.post("/signout").status_code in (303, 403)  # a token has no session to end
    wrong = running.client(headers={"authorization": f"Bearer {token[:-2]}xx"})
    assert wrong.get("/team", params={**running.period, "team": "payments", "download": "apps"}).status_code == 401
    assert console_cli(running.settings.console_users_path, "tokens", "remove", "export-pay").returncode == 0
    assert bot.get("/team", params={**running.period, "team": "payments", "download": "apps"}).status_code == 401


# ------------------------------------------------------------------ the figures and the URLs


def test_figures_equal_chargeback_report(running: Running) -> None:
    fin = running.client("fin")
    for mode, column in (("showback", "list_cost"), ("chargeback", "total")):
        params = {**running.period, **({"mode": mode} if mode != "showback" else {})}
        teams = csv_rows(fin.get("/", params={**params, "download": "teams"}))
        report = running.report("--by", "team", "--mode", mode)
        assert [(r["label"], r[column], r["events"]) for r in teams[:-1]] == [
            (in_csv(line["label"]), line[column], str(line["events"])) for line in report["lines"]]
        assert teams[-1][column] == report["totals"][column]
        days = csv_rows(fin.get("/", params={**params, "download": "days"}))
        basis = "model_cost" if mode == "chargeback" else "list_cost"
        assert sum(int(d["amount"].replace(".", "")) for d in days) == int(report["totals"][basis].replace(".", ""))
        apps = csv_rows(fin.get("/team", params={**params, "team": "payments", "download": "apps"}))
        by_app = running.report("--by", "app", "--team", "payments", "--mode", mode)
        assert [(r["label"], r[column]) for r in apps[:-1]] == [(line["label"], line[column]) for line in by_app["lines"]]
    page = fin.get("/", params=running.period).text
    total = running.report("--by", "team")["totals"]["list_cost"]
    assert f'data-total="list_cost" data-value="{total}"' in page


def test_filters_are_values_not_sql(running: Running) -> None:
    fin = running.client("fin")
    for evil in ("payments' OR '1'='1", "payments\\' OR 1=1 --", "{team:String}", "payments%"):
        rows = csv_rows(fin.get("/", params={**running.period, "team": evil, "download": "teams"}))
        assert rows[-1]["events"] == "0" and rows[:-1] == [], evil
    assert fin.get("/", params={**running.period, "team": "a\x00b"}).status_code == 400
    assert fin.get("/", params={"from": "2026-13-01", "to": "2026-13-02"}).status_code == 400
    assert fin.get("/", params={"from": running.last.isoformat(), "to": running.first.isoformat()}).status_code == 400
    assert fin.get("/", params={"month": "2026-1"}).status_code == 400
    assert fin.get("/", params={"mode": "free"}).status_code == 400
    assert fin.get("/", params={**running.period, "download": "nope"}).status_code == 404


def test_csv_cells_never_run_as_formulas(running: Running) -> None:
    fin = running.client("fin")
    raw = fin.get("/", params={**running.period, "tenant": "acme", "download": "teams"}).text
    row = next(r for r in csv.reader(io.StringIO(raw)) if r and "HYPERLINK" in r[0])
    assert row[0] == "'" + ODD_TEAM
    assert all(not cell.startswith("=") for r in csv.reader(io.StringIO(raw)) for cell in r)


def test_statement_page_and_download_are_the_cli_statement(running: Running) -> None:
    fin = running.client("fin")
    page = fin.get("/statement", params={"team": "payments", **running.period})
    assert page.status_code == 200 and "data-statement" in page.text and "content-disposition" not in page.headers
    assert "default-src 'none'" in page.headers["content-security-policy"]
    download = fin.get("/statement", params={"team": "payments", **running.period, "download": "1"})
    assert download.headers["content-disposition"] == (
        f'attachment; filename="statement-payments-{running.first.isoformat()}-{running.last.isoformat()}.html"')
    total = running.report("--by", "app", "--team", "payments")["totals"]["list_cost"]
    for html in (page.text, download.text):
        assert 'data-team="payments"' in html and f'data-total="list_cost" data-value="{total}"' in html


@pytest.mark.parametrize("path", ["/", "/team?team=payments", "/governance", "/budgets", "/prices", "/access"])
def test_admin_pages_render(running: Running, path: str) -> None:
    root = running.client("root")
    answer = root.get(path, params=running.period if "?" not in path else None)
    assert answer.status_code == 200, answer.text[:500]
    assert "Not yours" not in answer.text


def test_governance_page_shows_the_cli_verdicts(running: Running) -> None:
    fin = running.client("fin")
    page = fin.get("/governance", params=running.period).text
    assert "being computed" not in page
    verdicts = re.findall(r'data-check="(\w+)".*?data-verdict="([^"]+)"', page, re.S)
    assert {name for name, _ in verdicts} >= {"shared_credentials", "retries", "bursts", "unattributed"}
    body = json.loads(json.dumps(verdicts))
    assert all(label in ("clean", "findings") for _, label in body)


EXPORT = Path(__file__).resolve().parents[1] / "analytics" / "governance" / "exports" / "openai_usage_api.json"


def test_reconciliation_upload_is_the_cli_reconcile_and_stored_for_finance(running: Running) -> None:
    fin = running.client("fin")
    page = fin.get("/reconcile")
    token = csrf_of(page.text)
    files = {"exports": (EXPORT.name, EXPORT.read_bytes(), "application/json")}
    assert fin.post("/reconcile", files=files, data={}).status_code == 403  # no CSRF token
    assert fin.post("/reconcile", files=files, data={"csrf": "0" * 64}).status_code == 403
    done = fin.post("/reconcile", files=files, data={"csrf": token})
    assert done.status_code == 303, done.text
    result = fin.get(done.headers["location"])
    assert result.status_code == 200 and "data-verdict" in result.text
    lines = csv_rows(fin.get(done.headers["location"] + "&download=lines"))
    process = subprocess.run(
        [sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "reconcile", "--provider-export", str(EXPORT), "--format", "json",
         "--aggregator", running.base, "--sql-token", SQL_TOKEN], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
    )  # fmt: skip
    cli = json.loads(process.stdout)["sections"]["lines"]
    assert [(r["day"], r["model"], r["status"]) for r in lines] == [(r["day"], r["model"], r["status"]) for r in cli] and lines
    # A stored run is finance's evidence: an admin sees it too; viewers, even with its id, do not.
    assert running.client("root").get(done.headers["location"]).status_code == 200
    assert running.client("pay").get(done.headers["location"]).status_code == 403
    assert running.client("acme").get(done.headers["location"] + "&download=lines").status_code == 403
    bad = fin.post("/reconcile", files={"exports": ("x.json", b"{not an export", "application/json")}, data={"csrf": token})
    assert bad.status_code == 400 and "unrecognized provider export" in bad.text


class FixedBudgets:
    """A budgets engine as the console's interface sees one (console/budgets.py): statuses at a moment."""

    def __init__(self, rows: list[BudgetStatus]) -> None:
        self.rows = rows

    def statuses(self, runner: object, *, at: datetime) -> list[BudgetStatus]:
        return self.rows


def test_budgets_through_the_interface_each_viewer_their_own(running: Running) -> None:
    start = datetime(running.last.year, running.last.month, 1, tzinfo=UTC)
    end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    rows = [
        BudgetStatus("pay-monthly", {"team": "payments"}, "monthly", start, end, "USD", Decimal(100), Decimal("81.50"), "enforce",
                     "warning", forecast_exhausted_at=end - timedelta(days=3)),
        BudgetStatus("search-monthly", {"team": "search"}, "monthly", start, end, "USD", Decimal(50), Decimal(10), "alert", "ok"),
        BudgetStatus("acme-gpt4o", {"tenant": "acme", "model": "gpt-4o"}, "daily", start, start + timedelta(days=1), "tokens",
                     Decimal(1_000_000), Decimal(1_200_000), "alert", "exceeded"),
    ]  # fmt: skip
    console = running.aggregator.console
    before = console.budgets
    console.budgets = FixedBudgets(rows)
    try:
        assert [r["budget_id"] for r in csv_rows(running.client("fin").get("/budgets", params={"download": "budgets"}))] == [
            "pay-monthly", "search-monthly", "acme-gpt4o"]
        mine = csv_rows(running.client("pay").get("/budgets", params={"download": "budgets"}))
        assert [(r["budget_id"], r["spend"], r["status"]) for r in mine] == [("pay-monthly", "81.50", "warning")]
        assert [r["budget_id"] for r in csv_rows(running.client("acme").get("/budgets", params={"download": "budgets"}))] == ["acme-gpt4o"]
        team = running.client("pay").get("/team", params={**running.period, "team": "payments"})
        assert 'data-table="budgets"' in team.text and "pay-monthly" in team.text and "search-monthly" not in team.text
    finally:
        console.budgets = before
    # The engine itself (issue 18): a budget loaded into the store shows with the spend `chargeback budgets status` gives.
    assert "No budgets in this view" in running.client("fin").get("/budgets").text
    save_budgets(running.aggregator.store, parse_records([{"id": "pay-engine", "scope": {"team": "payments"}, "period": "monthly",
                                                           "amount": 10**9, "unit": "tokens", "effective_from": "2020-01-01"}]))  # fmt: skip
    (status,) = budget_status(LocalRunner(running.aggregator.store), with_alerts=False)
    (shown,) = csv_rows(running.client("pay").get("/budgets", params={"download": "budgets"}))
    assert (shown["budget_id"], shown["spend"], shown["status"], shown["unit"]) == ("pay-engine", status.spend_text, "ok", "tokens")
