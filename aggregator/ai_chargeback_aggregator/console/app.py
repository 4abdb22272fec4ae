"""The console's routes: sign-in, the pages, and every table as CSV, each behind the same checks.

Order of checks for every page and download: a principal (session cookie or
bearer token, else sign-in / 401), a well-formed view (400), access to that
view (403), then the data. State changes (sign-in, sign-out, uploads) are POSTs
with a CSRF token and, when the browser sends one, our Origin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio.from_thread
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..analytics.governance import GovernanceError
from ..analytics.reconcile import (
    ExportError,
    latest_by_provider,
    list_runs,
    load_run,
    record_of,
    same_files,
    save_run,
    valid_run_id,
)
from ..analytics.reports import Handle, HandleError, Runner, allocation_config
from ..analytics.statement import attach_raw_facts, money, render_page
from ..settings import AggregatorSettings
from ..store.clickhouse import Store, StoreError
from . import data, reconciliation
from .access import BadRequest, Principal, Refused, View, authorize, authorize_slice, parse_view
from .accounts import AccountsFile
from .analyses import Analyses, BackgroundRunner, Outcome, PageStoreRunner
from .auth import SignIn, security_headers
from .budgets import BudgetSource, Unavailable, default_source
from .oidc import OidcClient
from .page_runner import PageRunner
from .sessions import SESSION_COOKIE, Session, Sessions, load_or_create_key
from .tables import Table, to_csv

log = logging.getLogger(__name__)
audit = logging.getLogger("ai_chargeback_aggregator.console.audit")

STATIC_DIR = Path(__file__).with_name("static")
STATEMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
NAV = (("overview", "Overview", None), ("team", "Teams", None), ("governance", "Governance", None),
       ("reconcile", "Reconciliation", "finance"), ("budgets", "Budgets", None), ("prices", "Prices", "finance"),
       ("access", "Access", "admin"))  # fmt: skip


@dataclass
class Page:
    template: str
    title: str
    context: dict[str, Any]
    tables: dict[str, Table]


class Console(SignIn):
    """Everything the console's routes share: settings, store sessions, accounts, sessions, templates."""

    def __init__(self, settings: AggregatorSettings, *, budgets: BudgetSource | None = None,
                 analysis_wait_s: float = 0.2, analysis_fresh_s: float = 300.0) -> None:  # fmt: skip
        self.settings = settings
        # Own store sessions: pages are not queued behind /v1/sql, nor behind slow analyses.
        self.store = Store.from_settings(settings)
        self.analysis_store = Store.from_settings(settings)
        # Pages ask the same plan and loss queries in several reports: one answer per request (page_runner.py).
        # Across requests too while the store is unchanged; system.parts shows one server, so not in cluster mode.
        self.runner = PageRunner(PageStoreRunner(self.store), shared=not settings.cluster)
        self.analysis_runner: Runner = BackgroundRunner(self.analysis_store)
        self.accounts = AccountsFile(settings.console_users_path)
        self._sessions: Sessions | None = None
        self._sessions_lock = threading.Lock()
        self.analyses = Analyses(wait_s=analysis_wait_s, fresh_s=analysis_fresh_s)
        self._opening: futures.Future[Any] | None = None
        self.budgets = budgets if budgets is not None else default_source()
        self.oidc = OidcClient.from_settings(settings) if settings.console_oidc_issuer else None
        self.templates = Environment(loader=PackageLoader("ai_chargeback_aggregator.console", "templates"),
                                     autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)  # fmt: skip
        self.templates.filters["money"] = money
        self.templates.globals["version"] = __version__
        # Compiled now, not by each page's first visitor: compiling the overview's templates was 40-220 ms of its first request.
        for name in self.templates.list_templates():
            self.templates.get_template(name)

    @property
    def sessions(self) -> Sessions:
        """Made on first use: an aggregator nobody signs in to writes no key file."""
        with self._sessions_lock:
            return self._make_sessions()

    def _make_sessions(self) -> Sessions:
        if self._sessions is None:
            secret = self.settings.console_session_secret
            key = load_or_create_key(secret.get_secret_value() if secret else None, self.settings.console_users_path)
            self._sessions = Sessions(key, lifetime_s=self.settings.console_session_hours * 3600)
        return self._sessions

    def config(self) -> allocation_config.AllocationConfig:
        return allocation_config.load(self.settings.allocation_config_path)

    def start(self) -> None:
        """Open the store sessions now, in the background, not on the first page: opening one took 70-140 ms (load 5 to 7)."""
        self._opening = self.analyses.prepare(lambda: (self.store.query("SELECT 1"), self.analysis_store.query("SELECT 1")))

    def close(self) -> None:
        if self._opening is not None and not self._opening.cancel():
            futures.wait([self._opening], timeout=60)  # else a session opened after close keeps the engine open
        self.analyses.close()
        self.store.close()
        self.analysis_store.close()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.page(self.overview), name="overview"),
            Route("/team", self.page(self.team), name="team"),
            Route("/statement", self.page(self.statement), name="statement"),
            Route("/explain", self.page(self.explain), name="explain"),
            Route("/governance", self.page(self.governance), name="governance"),
            Route("/reconcile", self.page(self.reconcile), name="reconcile", methods=["GET", "POST"]),
            Route("/budgets", self.page(self.budgets_page), name="budgets"),
            Route("/prices", self.page(self.prices), name="prices"),
            Route("/access", self.page(self.access), name="access"),
            Route("/signin", self.signin, name="signin", methods=["GET", "POST"]),
            Route("/signout", self.signout, name="signout", methods=["POST"]),
            Route("/auth/oidc/start", self.oidc_start, name="oidc_start"),
            Route("/auth/oidc/callback", self.oidc_callback, name="oidc_callback"),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]

    # ------------------------------------------------------------------ who is asking

    def principal(self, request: Request) -> tuple[Principal | None, Session | None]:
        authorization = request.headers.get("authorization", "")
        accounts = self.accounts.current()
        if authorization.startswith("Bearer "):
            token = accounts.token(authorization[len("Bearer ") :].strip())
            return (Principal(token.name, token.grants, "token"), None) if token else (None, None)
        session = self.sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None, None
        if session.via == "password":
            user = accounts.users.get(session.user)
            if user is None or not user.password_hash or user.stamp() != session.stamp:
                return None, None
            return Principal(user.name, user.grants, "password"), session
        if session.via == "sso":
            grants = accounts.sso_grants(session.user, list(session.groups))
            user = accounts.users.get(session.user)
            if grants is None or (user is not None and user.stamp() != session.stamp):
                return None, None
            return Principal(session.user, grants, "sso"), session
        return None, None

    def href(self, request: Request, name: str, query: Mapping[str, str] | None = None) -> str:
        path = request.app.url_path_for(name) if name != "static" else "/static"  # a Mount: its prefix
        root = request.scope.get("root_path") or ""
        return root + path + ("?" + urlencode(dict(query)) if query else "")

    def page(self, build: Callable[[Request, Principal], Page | Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            # The page's budget for waiting on analyses starts with the request (analyses.py).
            with self.analyses.page() as waited, self.runner.page(fresh="no-cache" in request.headers.get("cache-control", "")) as queries:
                response = answer(request)
            # Server time, as browsers' developer tools and `make bench` read it; then the store's share and query count,
            # and the time spent waiting for analyses.
            response.headers["server-timing"] = (f"app;dur={(time.perf_counter() - started) * 1000:.1f}, {queries.server_timing()}, "
                                                 f"{waited.server_timing()}")  # fmt: skip
            return response

        def answer(request: Request) -> Response:
            principal, session = self.principal(request)
            wants_csv = "download" in request.query_params
            if principal is None:
                if wants_csv or "authorization" in request.headers or request.method != "GET":
                    return PlainTextResponse("sign in first (or send Authorization: Bearer <console token>)\n", status_code=401,
                                             headers={"www-authenticate": 'Bearer realm="chargeback console"'})  # fmt: skip
                here = request.url.path[len(request.scope.get("root_path") or "") :] + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(self.href(request, "signin", {"next": here}), status_code=303)
            try:
                result = build(request, principal)
            except BadRequest as exc:
                return self.error(request, principal, session, 400, "Bad request", str(exc), plain=wants_csv)
            except Refused as exc:
                audit.warning("refused", extra={"user": principal.name, "path": request.url.path, "query": request.url.query})
                return self.error(request, principal, session, 403, "Not yours to see", str(exc), plain=wants_csv)
            except HandleError as exc:
                return self.error(request, principal, session, 400, "Bad drill-down handle", str(exc), plain=wants_csv)
            except StoreError as exc:
                log.warning("console page %s: store error: %s", request.url.path, exc)
                return self.error(request, principal, session, 503, "The store did not answer", str(exc).splitlines()[0][:300], plain=wants_csv)
            if isinstance(result, Response):
                return result
            download = request.query_params.get("download")
            if download is not None:
                table = result.tables.get(download)
                if table is None:
                    return PlainTextResponse(f"no table {download!r} on this page; one of: {', '.join(result.tables)}\n", status_code=404)
                page_name = request.url.path[len(request.scope.get("root_path") or "") :].strip("/").replace("/", "-") or "overview"
                filename = f"{page_name}-{download}.csv"
                audit.info("download", extra={"user": principal.name, "path": request.url.path, "query": request.url.query})
                return Response(to_csv(table), media_type="text/csv; charset=utf-8",
                                headers={"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"})  # fmt: skip
            return self.render(request, principal, session, result)

        return endpoint

    def render(self, request: Request, principal: Principal, session: Session | None, page: Page, status: int = 200) -> HTMLResponse:
        def link(name: str, **query: str) -> str:
            return self.href(request, name, {k: v for k, v in query.items() if v})

        def download(table: str) -> str:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "download"]
            return (request.scope.get("root_path") or "") + request.url.path[len(request.scope.get("root_path") or "") :] + "?" + urlencode([*params, ("download", table)])

        nav = [(name, label, link(name)) for name, label, need in NAV
               if need is None or (need == "finance" and principal.sees_everything) or principal.role == need]  # fmt: skip
        html = self.templates.get_template(page.template).render(
            title=page.title, principal=principal, nav=nav, current=request.scope.get("route_name", ""), link=link, download=download,
            csrf=self.sessions.csrf_token(session.sid) if session else "", static=self.href(request, "static"),
            signout=self.href(request, "signout"), **page.context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status, headers=security_headers())

    def error(self, request: Request, principal: Principal | None, session: Session | None, status: int, title: str, message: str,
              *, plain: bool = False) -> Response:  # fmt: skip
        if plain or principal is None:
            return PlainTextResponse(f"{title}: {message}\n", status_code=status, headers=security_headers())
        return self.render(request, principal, session, Page("error.html", title, {"status": status, "message": message}, {}), status)

    def view(self, request: Request, principal: Principal, *, require: tuple[str, ...] = ()) -> View:
        params = parse_qs(request.url.query, keep_blank_values=False)
        return authorize(principal, parse_view(params, require=require))

    def analysis(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Outcome:
        return self.analyses.get(key, compute)

    # ------------------------------------------------------------------ pages

    def overview(self, request: Request, principal: Principal) -> Page | Response:
        params = parse_qs(request.url.query)
        if not principal.sees_everything and not any(k in params for k in ("team", "tenant")):
            # A viewer's overview is always one of their grants, named in the URL.
            query = {**{k: v[0] for k, v in params.items()}, **principal.default_slice()}
            return RedirectResponse(self.href(request, "overview", query), status_code=303)
        view = self.view(request, principal)
        link = _linker(self, request, view)
        # Readiness starts after the page's own queries: started before them, it slowed them (the first overview at 10M
        # events: 209-298 ms in the store, 72-148 ms started after; bench_console, load 5 to 7), and it cannot finish
        # within the page's budget there anyway.
        result = data.overview(self.runner, view, self.config(), link=link)
        readiness: Outcome | None = None
        if principal.sees_everything or view.filters.get("tenant") in principal.grants.tenants:
            readiness = self.analysis(("readiness", view.first, view.last, view.filters.get("tenant", "")),
                                      lambda: data.readiness(self.analysis_runner, view))  # fmt: skip
        context = {"view": view, "o": result, "readiness": readiness, "slices": principal.slices(), "headline": data.headline_column(view.mode)}
        return Page("overview.html", "Overview", context, result.tables)

    def team(self, request: Request, principal: Principal) -> Page | Response:
        params = parse_qs(request.url.query)
        if "team" not in params:
            teams = sorted(principal.grants.teams)
            if len(teams) == 1 and not principal.grants.tenants:
                return RedirectResponse(self.href(request, "team", {**{k: v[0] for k, v in params.items()}, "team": teams[0]}), status_code=303)
            view = parse_view(params)
            config = self.config()

            def teams_in(filters: dict[str, str] | None) -> list[dict[str, Any]]:
                report = data.build_report(self.runner, first=view.first, last=view.last, by="team", mode=view.mode, config=config,
                                           filters=filters)  # fmt: skip
                return [line for line in report.lines if line["key"]]

            if principal.sees_everything:
                teams_seen = teams_in({"tenant": view.filters["tenant"]} if "tenant" in view.filters else None)
            else:
                teams_seen = [line for team in sorted(principal.grants.teams) for line in teams_in({"team": team})]
                teams_seen += [{**line, "_tenant": tenant} for tenant in sorted(principal.grants.tenants)
                               for line in teams_in({"tenant": tenant}) if line["key"] not in principal.grants.teams]  # fmt: skip
            return Page("teams.html", "Teams", {"view": view, "teams": teams_seen, "headline": data.headline_column(view.mode)}, {})
        view = self.view(request, principal, require=("team",))
        statement = data.statement_for(self.runner, view, self.config(), facts=False)
        page = data.team_page(statement, view, link=_linker(self, request, view))
        budgets = self._budgets(principal, only={"team": view.filters["team"]})
        tables = dict(page.tables)
        if isinstance(budgets, Table):
            tables["budgets"] = budgets
        months = _months(view)
        return Page("team.html", f"Team {view.filters['team']}", {"view": view, "p": page, "budgets": budgets, "months": months}, tables)

    def statement(self, request: Request, principal: Principal) -> Response:
        """The statement `chargeback statement` writes, as a page; with ?download=1 as a file."""
        view = self.view(request, principal, require=("team",))
        download = "download" in request.query_params
        try:
            # The file always has every fact, read inline; the page shows the raw-event ones once computed off its path.
            statement = data.statement_for(self.runner, view, self.config(), raw_facts=download)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if not download:
            key = ("statement-facts", view.filters["team"], view.filters.get("tenant", ""), view.first, view.last)
            facts = self.analyses.get(key, lambda: data.statement_raw_facts(self.analysis_runner, view), beside=True)
            note = ("being computed from the raw events; reload in a few seconds" if facts.pending
                    else f"could not be computed: {facts.error}" if facts.error else "")  # fmt: skip
            attach_raw_facts(statement, facts.value if facts.ready and not facts.error else None, note=note,
                             read_at=facts.computed_at)
        html = render_page(statement, billing_account=self.config().billing_account_name)
        answer_headers = {**security_headers(), "content-security-policy": STATEMENT_CSP}
        if download:
            name = "".join(c if c.isalnum() or c in "-_." else "_" for c in view.filters["team"])
            answer_headers["content-disposition"] = f'attachment; filename="statement-{name}-{view.first.isoformat()}-{view.last.isoformat()}.html"'
        return HTMLResponse(html, headers=answer_headers)

    def explain(self, request: Request, principal: Principal) -> Page:
        params = parse_qs(request.url.query)
        if len(params.get("handle", [])) != 1:
            raise BadRequest("give one drill-down handle (handle=cb1.…)")
        handle = Handle.decode(params["handle"][0])
        authorize_slice(principal, data.handle_slice(handle))
        try:
            limit = int(params.get("limit", ["100"])[0])
        except ValueError:
            raise BadRequest("limit must be a number") from None
        result, summary, events = data.drill_down(self.runner, handle, limit)
        # The raw recount reads every event of the period (seconds at 10M, a core's worth): asked for (?recount=1),
        # then off the page's path and not waited for; else the page shows the last one, if any.
        key = ("recount", handle)
        recount = (self.analyses.get(key, lambda: data.line_recount(self.analysis_runner, handle), beside=True)
                   if "recount" in params else self.analyses.peek(key))  # fmt: skip
        tables = {"events": events, "summary": summary}
        if recount is not None and recount.ready and not recount.error:
            tables["recount"] = data.recount_table(recount.value[1])
        context = {"handle": handle, "handle_text": params["handle"][0], "result": result, "summary": summary, "events": events,
                   "limit": limit, "max_limit": data.EXPLAIN_MAX_LIMIT, "recount": recount,
                   "recount_table": tables.get("recount")}  # fmt: skip
        return Page("explain.html", "Events behind a figure", context, tables)

    def governance(self, request: Request, principal: Principal) -> Page:
        view = self.view(request, principal)
        if not principal.sees_everything and view.filters.get("tenant") not in principal.grants.tenants:
            raise Refused("governance findings span teams: they are shown for a whole tenant you are granted, or to finance")
        latest = None
        if principal.sees_everything:
            # Bills are whole-provider figures: the reconciliation's verdicts are finance's, like its page.
            latest = reconciliation.latest_table(latest_by_provider(self.runner),
                                                 lambda run_id: self.href(request, "reconcile", {"run": run_id}))  # fmt: skip
        keys = {name: ("check", name, view.first, view.last, view.filters.get("tenant", "")) for name in data.CHECKS}
        # One wait for the page's nine checks, not one each, and after its own query: within the page's budget (analyses.py).
        found = self.analyses.get_all({keys[name]: lambda name=name: data.governance_check(self.analysis_runner, view, name)
                                       for name in data.CHECKS})  # type: ignore[misc]  # fmt: skip
        outcomes = {name: found[keys[name]] for name in data.CHECKS}
        tables = {name: data.check_table(name, o.value) for name, o in outcomes.items() if o.ready and not o.error}
        if latest is not None:
            tables["reconciliation"] = latest
        context = {"view": view, "outcomes": outcomes, "checks": data.CHECKS, "check_tables": tables, "reconciliation": latest,
                   "reconcile_href": self.href(request, "reconcile")}  # fmt: skip
        return Page("governance.html", "Governance", context, tables)

    def reconcile(self, request: Request, principal: Principal) -> Page | Response:
        """Stored runs, newest first; ?run=<id> one run's lines; POST an upload (reconciled, stored, then shown)."""
        if not principal.sees_everything:
            raise Refused("reconciliation compares whole provider bills: finance and admins only")
        if request.method == "POST":
            return self._reconcile_upload(request, principal)
        if "run" in request.query_params:
            return self._reconcile_run(request, principal, request.query_params["run"])
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            raise BadRequest("page must be a number") from None
        if not 1 <= page <= reconciliation.MAX_PAGES:
            raise BadRequest(f"page must be 1..{reconciliation.MAX_PAGES} (`chargeback reconcile runs --offset N` lists further)")
        per = reconciliation.RUNS_PER_PAGE
        # One row more than a page: whether there is a next page, without counting the table.
        records = list_runs(self.runner, limit=per + 1, offset=(page - 1) * per)
        history = reconciliation.history_table(records[:per], lambda run_id: self.href(request, "reconcile", {"run": run_id}))
        _, session = self.principal(request)
        pages = {"newer": self.href(request, "reconcile", {"page": str(page - 1)}) if page > 1 else "",
                 "older": self.href(request, "reconcile", {"page": str(page + 1)}) if len(records) > per and page < reconciliation.MAX_PAGES else ""}  # fmt: skip
        context = {"run": None, "history": history, "page": page, "pages": pages, "action": self.href(request, "reconcile"),
                   "form_csrf": self.sessions.csrf_token(session.sid) if session else ""}  # fmt: skip
        return Page("reconcile.html", "Reconciliation", context, {"runs": history})

    def _reconcile_run(self, request: Request, principal: Principal, run_id: str) -> Page | Response:
        if not valid_run_id(run_id):
            raise BadRequest("not a reconciliation run id (YYYYMMDDTHHMMSSZ-xxxxxxxx)")
        found = load_run(self.runner, run_id)
        if found is None:
            _, session = self.principal(request)
            return self.error(request, principal, session, 404, "No such reconciliation run", f"no stored run {run_id}",
                              plain="download" in request.query_params)  # fmt: skip
        record, result = found
        tables = {**reconciliation.tables(result), "sources": reconciliation.sources_table(record)}
        earlier = same_files(self.runner, record)
        for row in earlier:
            row["href"] = self.href(request, "reconcile", {"run": row["run_id"]})
        context = {"run": record, "result": result, "tables": tables, "same": earlier, "period": reconciliation.period_text(record),
                   "back": self.href(request, "reconcile")}  # fmt: skip
        return Page("reconcile.html", f"Reconciliation {record.run_id}", context, tables)

    def _reconcile_upload(self, request: Request, principal: Principal) -> Response:
        _, session = self.principal(request)
        if session is None:
            raise Refused("uploads come from a signed-in browser session")
        if int(request.headers.get("content-length") or 0) > reconciliation.MAX_UPLOAD_BYTES:
            raise BadRequest(f"the exports are larger than {reconciliation.MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        body = anyio.from_thread.run(request.body)
        try:
            fields, files = reconciliation.uploaded_files(request.headers.get("content-type", ""), body)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if not self.origin_ok(request) or not self.sessions.csrf_ok(session.sid, fields.get("csrf", "")):
            raise Refused("the upload did not come from this console's form (CSRF)")
        try:
            outcome = reconciliation.run_reconciliation(self.runner, files, tolerance_pct=fields.get("tolerance_pct", ""))
        except (ExportError, GovernanceError, ValueError) as exc:
            raise BadRequest(str(exc)) from None  # nothing stored: a run is stored whole or not at all
        record = record_of(outcome.result, sources=outcome.sources, providers=outcome.providers, ran_by=principal.name,
                           via="console", tolerance=outcome.tolerance)
        save_run(self.store, record, outcome.result)
        audit.info("reconciled", extra={"user": principal.name, "run": record.run_id,
                                        "files": [f"{s.name} sha256:{s.sha256}" for s in record.sources]})  # fmt: skip
        return RedirectResponse(self.href(request, "reconcile", {"run": record.run_id}), status_code=303)

    def budgets_page(self, request: Request, principal: Principal) -> Page:
        budgets = self._budgets(principal)
        return Page("budgets.html", "Budgets", {"budgets": budgets}, {"budgets": budgets} if isinstance(budgets, Table) else {})

    def _budgets(self, principal: Principal, *, only: Mapping[str, str] | None = None) -> Table | str:
        if isinstance(self.budgets, Unavailable):
            return self.budgets.reason
        try:
            return data.budget_table(data.budget_statuses(self.budgets, self.runner), principal, only=only)
        except LookupError as exc:
            return str(exc)

    def prices(self, request: Request, principal: Principal) -> Page:
        if not principal.sees_everything:
            raise Refused("negotiated prices are for finance and admins")
        from ..pricing.override_store import LIST_SQL

        columns, rows = self.runner.query(LIST_SQL, {"db": self.runner.database})
        table = Table("overrides", "Price overrides in force", [data.Column(c, c.replace("_", " ")) for c in columns],
                      [dict(zip(columns, row)) for row in rows], empty="None: catalog prices only.",
                      notes=["effective_from inclusive, effective_to exclusive (UTC days); rates in USD per 1M tokens",
                             "read-only: change them with `chargeback prices load FILE`, then `chargeback reprice`"])  # fmt: skip
        return Page("prices.html", "Prices", {"table": table}, {"overrides": table})

    def access(self, request: Request, principal: Principal) -> Page:
        if principal.role != "admin":
            raise Refused("the access list is for admins")
        accounts = self.accounts.current()
        cols = [data.Column("name", "Name"), data.Column("kind", "Kind"), data.Column("role", "Role"),
                data.Column("teams", "Teams", "list"), data.Column("tenants", "Tenants", "list")]  # fmt: skip
        rows = ([{"name": u.name, "kind": "SSO user" if u.sso and not u.password_hash else "user", "role": u.grants.role,
                  "teams": sorted(u.grants.teams), "tenants": sorted(u.grants.tenants)} for u in accounts.users.values()]
                + [{"name": t.name, "kind": "token", "role": t.grants.role, "teams": sorted(t.grants.teams),
                    "tenants": sorted(t.grants.tenants)} for t in accounts.tokens.values()]
                + [{"name": g, "kind": "SSO group", "role": gr.role, "teams": sorted(gr.teams), "tenants": sorted(gr.tenants)}
                   for g, gr in accounts.groups.items()])  # fmt: skip
        table = Table("access", "Who may see what", cols, rows, notes=["change with `chargeback console users|tokens|groups ...`"])
        return Page("access.html", "Access", {"table": table}, {"access": table})

    # ------------------------------------------------------------------ signing in and out

def _linker(console: Console, request: Request, view: View) -> Callable[..., str]:
    def link(name: str, **changes: str) -> str:
        if name == "explain":
            return console.href(request, "explain", changes)
        return console.href(request, name, view.with_filters(**changes).query())

    return link


def _months(view: View) -> list[str]:
    """The statement months offered: the one the period ends in, then the eleven before it.

    From the period's end, not its start: a period that crosses into a new month must
    offer that month's statement too.
    """
    newest = view.last.replace(day=1)
    months = []
    for back in range(12):
        year, month = divmod(newest.year * 12 + newest.month - 1 - back, 12)
        months.append(f"{year:04d}-{month + 1:02d}")
    return months
