"""Console tests' helpers: a running aggregator with a seeded store and console accounts, and the browser's steps.

Usage is seeded through the real ingest path (support/seed.py) into an embedded
store; the aggregator then opens that store and serves the console on a real
port. Accounts are created with the real CLI (`chargeback console ...`).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.settings import AggregatorSettings
from support.aggregator_fixtures import make_settings
from support.seed import day_start, random_events, recent_day, seeded_store, store_dsn, usage_event

SQL_TOKEN = "console-test-sql-token"
# Guards against a hang, not timings: a loaded shared machine can take minutes to start a Python process.
PROCESS_TIMEOUT_S = 600
HTTP_TIMEOUT_S = 300
PASSWORDS = {"fin": "finance-password-1", "root": "admin-password-12", "pay": "payments-viewer-1", "acme": "acme-tenant-viewer"}
ODD_TEAM = "=HYPERLINK(\"http://x\")"  # a team name a spreadsheet would run as a formula


@dataclass
class Running:
    aggregator: Aggregator
    settings: AggregatorSettings
    base: str
    first: date
    last: date
    tmp: Path

    @property
    def period(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}

    def client(self, user: str | None = None, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.base, follow_redirects=False, timeout=HTTP_TIMEOUT_S, **kwargs)
        if user:
            sign_in(client, user, PASSWORDS[user])
        return client

    def report(self, *argv: str) -> dict[str, Any]:
        """`chargeback report ... --format json` through this aggregator's /v1/sql: the CLI's own figures."""
        return self._report(*argv, "--from", self.first.isoformat(), "--to", self.last.isoformat())

    def report_month(self, month: str, *argv: str) -> dict[str, Any]:
        return self._report(*argv, "--month", month)

    def _report(self, *argv: str) -> dict[str, Any]:
        process = subprocess.run(
            [sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "report", *argv, "--format", "json",
             "--aggregator", self.base, "--sql-token", SQL_TOKEN],
            capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
        )  # fmt: skip
        assert process.returncode in (0, 1), process.stderr
        return json.loads(process.stdout)


def console_cli(users_file: str, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "console", "--users-file", users_file, *argv],
                          input=stdin, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)  # fmt: skip


def sign_in(client: httpx.Client, user: str, password: str, *, prefix: str = "") -> httpx.Response:
    form = client.get(f"{prefix}/signin")
    assert form.status_code == 200, form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    answer = client.post(f"{prefix}/signin", data={"csrf": csrf.group(1), "username": user, "password": password, "next": "/"})
    assert answer.status_code == 303, answer.text
    return answer


def seed(tmp: Path) -> tuple[date, date]:
    first = recent_day(20)
    days = 14
    with seeded_store(tmp) as store:
        events = random_events(900, first=first, days=days, rng=random.Random(19))
        events.append(usage_event(day_start(recent_day(15)) + timedelta(hours=3), team=ODD_TEAM, tenant="acme", app="formula"))
        store.insert(events)
        store.build_rollups()
    return first, first + timedelta(days=days - 1)


def start(tmp: Path, **overrides: Any) -> Running:
    first, last = seed(tmp)
    settings = make_settings(tmp, store_dsn=store_dsn(tmp), sql_token=SQL_TOKEN, **overrides)
    users = settings.console_users_path
    for argv in (("users", "add", "fin", "--role", "finance"), ("users", "add", "root", "--role", "admin"),
                 ("users", "add", "pay", "--role", "viewer", "--team", "payments"),
                 ("users", "add", "acme", "--role", "viewer", "--tenant", "acme")):  # fmt: skip
        done = console_cli(users, *argv, "--password-stdin", stdin=PASSWORDS[argv[2]] + "\n")
        assert done.returncode == 0, done.stderr
    aggregator = Aggregator(settings)
    aggregator.start()
    return Running(aggregator, settings, f"http://127.0.0.1:{aggregator.http.port}", first, last, tmp)


# ---------------------------------------------------------------- the browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync"]  # fmt: skip


def chromium_binary() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def browser_sign_in(page: Any, base: str, user: str) -> None:
    page.goto(base + "/")
    assert "/signin" in page.url
    page.get_by_label("Name").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_label("Password").press("Enter")  # the keyboard submits the form
    page.wait_for_selector("[data-user]")


def table_rows(page: Any, table: str) -> list[dict[str, str]]:
    """Each body row of a console table as {column: data-value}."""
    rows = page.locator(f"[data-table={table}] tbody tr")
    return [
        {cell.get_attribute("data-col"): cell.get_attribute("data-value") for cell in rows.nth(i).locator("td").all()}
        for i in range(rows.count())
    ]


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


