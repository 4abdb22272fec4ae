"""The statement as one self-contained HTML page: inline CSS, inline SVG, no script, no network.

A Content-Security-Policy forbids every external load, so the file shows the same
thing offline, attached to an email or printed. Everything that comes from data
(team, app and model names, tenants, handles) is HTML-escaped. Money is the
reports' own text (cents, Decimal), only grouped by thousands for reading; the
exact value is kept in ``data-value`` beside it, so the page can be checked
against ``chargeback report`` mechanically.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from html import escape
from typing import Any

from ... import __version__
from ..reports.report import money_text, percent_text
from .charts import OTHER, PALETTE, Bar, Day, attr, bar_chart, colors_for, daily_chart, legend, share_bar
from .data import Statement, cents

# Parents on the first row, the subsets they include under them.
TOKEN_TOTALS = (
    ("events", "Requests", "metered at the gateway"),
    ("input_tokens", "Input tokens", "incl. cached and cache-write input"),
    ("output_tokens", "Output tokens", "incl. reasoning"),
    ("cache_write_input_tokens", "Cache-write input", "of input: written to the prompt cache"),
    ("cached_input_tokens", "Cached input", "of input: read from the prompt cache"),
    ("reasoning_tokens", "Reasoning tokens", "of output"),
)
TABLE_TOKENS = (
    ("events", "Requests"),
    ("input_tokens", "Input"),
    ("cached_input_tokens", "Cached"),
    ("cache_write_input_tokens", "Cache write"),
    ("output_tokens", "Output"),
    ("reasoning_tokens", "Reasoning"),
)
# Where an identity attribute came from, in words a reader can judge, and how much to trust it.
SOURCE_TEXT: dict[str, tuple[str, str]] = {
    "consumer": ("authenticated Kong consumer", "#009E73"),
    "route_tag": ("route tag (gateway configuration)", "#0072B2"),
    "service_tag": ("service tag (gateway configuration)", "#56B4E9"),
    "header": ("request header (trusted client)", "#E69F00"),
    "default": ("default value", "#D55E00"),
    "none": ("not resolved", "#b91c1c"),
}
MAX_CHART_SERIES = len(PALETTE) - 1  # past it, the smallest apps share one colour


def render_page(statement: Statement, *, billing_account: str = "Kong AI Gateway") -> str:
    s = statement
    amount = s.amount_column
    title = f"{s.mode.title()} statement — {s.team} — {s.first.isoformat()} to {s.last.isoformat()}"
    body = [
        _masthead(s, billing_account),
        _empty(s),
        _unpriced(s),
        _measurement(s),
        _totals(s),
        _daily(s),
        '<div class="two">',
        _section("by-app", "Spend by app", _bars(s, s.by_app.lines, "app"), _report_note(s, "app")),
        _section("by-model", "Spend by model", _bars(s, s.by_model.lines, "model"), _report_note(s, "model")),
        "</div>",
        _lines_table(s, amount),
        _attribution(s),
        _notes(s),
        (
            f"<footer>kong-ai-chargeback {escape(__version__)} · generated {_ts(s.generated_at)} · "
            "one self-contained file: no scripts, fonts or network</footer>"
        ),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="kong-ai-chargeback {attr(__version__)}">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body><main class="sheet" data-statement data-team="{attr(s.team)}" data-mode="{attr(s.mode)}" '
        f'data-from="{s.first.isoformat()}" data-to="{s.last.isoformat()}" data-currency="{attr(s.currency)}">'
        + "".join(body)
        + "</main></body></html>\n"
    )


# ------------------------------------------------------------------ formatting


def money(text: str) -> str:
    """The report's money text with thousands grouped: '-1234.50' -> '-1,234.50' (digits unchanged)."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, cents = digits.partition(".")
    return f"{sign}{int(whole):,}.{cents}" if cents else f"{sign}{int(whole):,}"


def _n(value: Any) -> str:
    return f"{int(value or 0):,}"


def _ts(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _money_cell(row: Mapping[str, Any], column: str, *, tag: str = "td", extra: str = "") -> str:
    text = str(row.get(column, "0.00"))
    return f'<{tag} class="num" data-col="{column}" data-value="{attr(text)}"{extra}>{money(text)}</{tag}>'


def _exact(s: Statement, line: Mapping[str, Any]) -> Decimal:
    """A line's exact amount in the statement's amount column (chart geometry)."""
    if s.mode == "chargeback":
        return Decimal(line["model_cost_exact"]) + Decimal(line["platform_fee_exact"])
    return Decimal(line["list_cost_exact"])


def _money_columns(s: Statement) -> list[tuple[str, str]]:
    if s.mode == "chargeback":
        return [("model_cost", "Model cost"), ("platform_fee", "Platform fee"), ("total", "Total")]
    return [("list_cost", "List cost")]


def _section(name: str, title: str, *parts: str, sub: str = "") -> str:
    subtitle = f'<p class="sub">{sub}</p>' if sub else ""
    return f'<section class="card" data-section="{attr(name)}"><h2>{escape(title)}</h2>{subtitle}{"".join(parts)}</section>'


def _command(s: Statement, by: str) -> str:
    argv = ["chargeback", "report", "--by", by, "--team", s.team]
    if "tenant" in s.filters:
        argv += ["--tenant", s.filters["tenant"]]
    argv += ["--from", s.first.isoformat(), "--to", s.last.isoformat()]
    if s.mode == "chargeback":
        argv += ["--mode", "chargeback"]
    return shlex.join(argv)


# ------------------------------------------------------------------ sections


def _masthead(s: Statement, billing_account: str) -> str:
    tenants = s.meta.get("tenants") or []
    if "tenant" in s.filters:
        tenants = [s.filters["tenant"]]
    catalogs = s.meta.get("catalog_versions") or []
    days = (s.last - s.first).days + 1
    basis = "contracted cost + platform fee" if s.mode == "chargeback" else "list price (showback)"
    meta = [
        ("Tenant" + ("s" if len(tenants) != 1 else ""), "tenants", ", ".join(tenants) or "—"),
        ("Period", "period", f"{s.first.isoformat()} to {s.last.isoformat()} ({days} UTC day{'s' if days != 1 else ''}, inclusive)"),
        ("Currency", "currency", s.currency),
        ("Cost basis", "basis", basis),
        ("Price catalog", "catalog", ", ".join(catalogs) or "—"),
        ("Last request", "last-event", s.raw_facts_note or _ts(s.meta.get("last_event_at"))),
        ("Generated", "generated", _ts(s.generated_at)),
        ("Last write", "last-write", s.raw_facts_note or _ts(s.meta.get("last_written_at"))),
    ]
    items = "".join(f'<div><dt>{escape(k)}</dt><dd data-field="{f}">{escape(v)}</dd></div>' for k, f, v in meta)
    total_label = "Total charged" if s.mode == "chargeback" else "Total at list price"
    headline = f'<span data-total="{s.amount_column}" data-value="{attr(s.totals[s.amount_column])}">{money(s.totals[s.amount_column])}</span>'
    charged = _charged(s)
    if charged:
        headline = f'<span data-field="charged" data-value="{attr(charged[2])}">{money(charged[2])}</span>'
    flag = '<div class="due-flag">excludes unpriced usage</div>' if s.totals.get("unpriced_events") else ""
    return (
        '<header class="masthead"><div class="who">'
        f'<div class="eyebrow">{escape(billing_account)} · AI usage {escape(s.mode)} statement</div>'
        f'<h1>Team <span data-field="team">{escape(s.team)}</span></h1>'
        f'<div class="period">{_day(s.first)} – {_day(s.last)}</div>'
        f'<dl class="meta">{items}</dl></div>'
        f'<div class="due"><div class="due-label">{total_label}</div>'
        f'<div class="due-amount"><span class="ccy">{escape(s.currency)}</span> {headline}</div>'
        f'<div class="due-sub">{_n(s.totals["events"])} requests</div>{flag}</div></header>'
    )


def _empty(s: Statement) -> str:
    """A name typed wrong must not read as a team that spent nothing."""
    if s.totals.get("events"):
        return ""
    return ('<section class="notice" data-section="empty"><h2>No usage recorded</h2>'
            f"<p>The gateway recorded no requests for team <strong>{escape(s.team)}</strong> in this period"
            f"{' and tenant ' + escape(s.filters['tenant']) if 'tenant' in s.filters else ''}. Check the team name as the "
            "plugin records it (<code>chargeback report --by team</code> lists them).</p></section>")  # fmt: skip


def _unpriced(s: Statement) -> str:
    events = int(s.totals.get("unpriced_events") or 0)
    if not events:
        return ""
    models = ", ".join(s.totals.get("unpriced_models") or []) or "?"
    rows = "".join(
        f'<tr data-handle="{attr(line["handle"])}"><td>{escape(line["app"])}</td><td>{escape(line["model"])}</td>'
        f'<td class="num">{_n(line["unpriced_events"])}</td><td class="num">{_n(line["unpriced_tokens"])}</td>'
        f'<td><code>{escape(line["handle"])}</code></td></tr>'
        for line in s.detail
        if line.get("unpriced_events")
    )
    return (
        '<section class="alert" data-section="unpriced" role="alert">'
        '<h2><span class="badge">UNPRICED</span> Usage without a known price — not included in any amount</h2>'
        f'<p><strong data-total="unpriced_events" data-value="{events}">{_n(events)}</strong> request(s) and '
        f'<strong data-total="unpriced_tokens" data-value="{int(s.totals.get("unpriced_tokens") or 0)}">{_n(s.totals.get("unpriced_tokens"))}</strong> '
        f"token(s) of model(s) <strong>{escape(models)}</strong> have no price in the catalog or overrides. They are counted in "
        "the usage figures but cost nothing here; the amounts below are understated by their value. "
        "Load a price (<code>chargeback prices load</code>), run <code>chargeback reprice</code> for the period, "
        "and regenerate this statement.</p>"
        '<table class="grid compact"><thead><tr><th>App</th><th>Model</th><th class="num">Requests</th>'
        f'<th class="num">Tokens</th><th>Drill-down handle</th></tr></thead><tbody>{rows}</tbody></table></section>'
    )


def _measurement(s: Statement) -> str:
    """Estimated usage is labelled, never passed off as measured; an unmeasured answer never as free."""
    t = s.totals
    estimated, unmeasured = int(t.get("estimated_events") or 0), int(t.get("unmeasured_events") or 0)
    if not estimated and not unmeasured:
        return ""
    rows = "".join(
        f'<tr data-handle="{attr(line["handle"])}"><td>{escape(line["app"])}</td><td>{escape(line["model"])}</td>'
        f'<td class="num">{_n(line["estimated_events"])}</td><td class="num">{money(line["estimated_cost"])}</td>'
        f'<td class="num">{_n(line["unmeasured_events"])}</td><td><code>{escape(line["handle"])}</code></td></tr>'
        for line in s.detail
        if line.get("estimated_events") or line.get("unmeasured_events")
    )
    parts = []
    if estimated:
        parts.append(
            f'<strong data-total="estimated_events" data-value="{estimated}">{_n(estimated)}</strong> of {_n(t["events"])} request(s) '
            f"({percent_text(t['estimated_request_share'])}) carry <em>estimated</em> usage, "
            f'<strong data-total="estimated_cost" data-value="{attr(t["estimated_cost"])}">{money(t["estimated_cost"])}</strong> '
            f"({percent_text(t['estimated_cost_share'])}) of the amount: the gateway could not see the provider's count (a streamed "
            "answer, a body too large to read) and estimated it, with the error bound stated in each request's note."
        )
    if unmeasured:
        parts.append(
            f'<strong data-total="unmeasured_events" data-value="{unmeasured}">{_n(unmeasured)}</strong> answered request(s) '
            f"({percent_text(t['unmeasured_request_share'])}) could not be measured at all: their usage and cost are "
            "<em>not</em> in the amounts below."
        )
    return (
        '<section class="notice" data-section="measurement">'
        '<h2><span class="badge">ESTIMATED</span> Usage the gateway estimated or could not measure</h2>'
        f'<p>{" ".join(parts)} <code>chargeback explain HANDLE</code> lists the requests and their notes.</p>'
        '<table class="grid compact"><thead><tr><th>App</th><th>Model</th><th class="num">Estimated requests</th>'
        '<th class="num">Estimated amount</th><th class="num">Unmeasured requests</th><th>Drill-down handle</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def _totals(s: Statement) -> str:
    t = s.totals
    tiles = "".join(
        f'<div class="tile"><div class="tile-label">{escape(label)}</div>'
        f'<div class="tile-value" data-total="{key}" data-value="{int(t.get(key) or 0)}">{_n(t.get(key))}</div>'
        f'<div class="tile-sub">{escape(sub)}</div></div>'
        for key, label, sub in TOKEN_TOTALS
    )
    rows = []
    if s.mode == "chargeback":
        rows.append(("Model cost (contracted)", "model_cost", ""))
        rows.append(("Platform fee", "platform_fee", ""))
        # Moves between this team's own apps (unattributed app) leave its totals as they are: not a row here.
    else:
        rows.append(("Model cost (list price)", "list_cost", ""))
    amounts = "".join(f'<tr class="{cls}"><th>{escape(label)}</th>{_money_cell(t, key, extra=f" data-total={key!r}")}</tr>' for label, key, cls in rows)
    charged = _charged(s)
    label = f"This team's usage, {escape(s.currency)}" if charged else f"Total {escape(s.currency)}"
    amounts += f'<tr class="{"subtotal" if charged else "grand"}"><th>{label}</th>{_money_cell(t, s.amount_column, extra=f" data-total={s.amount_column!r}")}</tr>'
    if charged:
        share, rounding, total = charged
        amounts += (f'<tr><th>Share of usage without a team ({escape(_policy_words(s))})</th>'
                    f'<td class="num" data-field="allocated_from_unattributed" data-value="{attr(share)}">{money(share)}</td></tr>')  # fmt: skip
        if rounding != "0.00":
            amounts += (f'<tr class="minor"><th>Rounding across teams</th>'
                        f'<td class="num" data-field="rounding" data-value="{attr(rounding)}">{money(rounding)}</td></tr>')  # fmt: skip
        amounts += (f'<tr class="grand"><th>Total charged {escape(s.currency)}</th>'
                    f'<td class="num" data-field="charged" data-value="{attr(total)}">{money(total)}</td></tr>')  # fmt: skip
    return (
        '<section class="totals" data-section="totals">'
        f'<div class="tiles">{tiles}</div>'
        f'<div class="amounts card"><h2>Amounts</h2><table>{amounts}</table>'
        '<p class="sub">Exact costs rounded once to cents; every column of this statement adds up to these totals.</p></div>'
        "</section>"
    )


def _charged(s: Statement) -> tuple[str, str, str] | None:
    """(share of unattributed, rounding, total charged) when the team-level policy gives this team some.

    The total charged is the team's line of `report --by team --mode chargeback`. That report rounds
    each team's own cost against all teams, this statement against this team alone: the cent or
    two this can differ by is shown as rounding, so the box adds up.
    """
    line = s.team_line
    if s.mode != "chargeback" or not line or line.get("allocated_in") in (None, "0.00"):
        return None
    rounding = cents(line["total"]) - cents(s.totals["total"]) - cents(line["allocated_in"])
    return line["allocated_in"], money_text(rounding), line["total"]


def _policy_words(s: Statement) -> str:
    policy = s.team_policy or {}
    words = str(policy.get("strategy", "")).replace("_", " ")
    return f"{words}, to {policy['owner']}" if policy.get("owner") else words


def _series(s: Statement) -> list[str]:
    ranked = sorted(s.by_app.lines, key=lambda line: -_exact(s, line))
    labels = [line["label"] for line in ranked if line["events"]]
    return labels if len(labels) <= MAX_CHART_SERIES + 1 else [*labels[:MAX_CHART_SERIES], OTHER]


def _daily(s: Statement) -> str:
    series = _series(s)
    colors = colors_for(series)
    shown = set(series)
    days = []
    for d in s.days:
        parts: dict[str, Decimal] = {}
        for label, value in d.by_app.items():
            key = label if label in shown else OTHER
            parts[key] = parts.get(key, Decimal(0)) + value
        days.append(Day(d.day, d.amount, d.events, parts))
    chart = daily_chart(days, series, colors, currency=s.currency)
    busiest = max(s.days, key=lambda d: Decimal(d.amount), default=None)
    total = s.totals[s.amount_column]
    sub = f"{escape(s.currency)} per UTC day, stacked by app. The days add up to {escape(s.currency)} {money(total)}."
    if busiest is not None and Decimal(busiest.amount) > 0:
        sub += f" Highest: {busiest.day.isoformat()}, {escape(s.currency)} {money(busiest.amount)}."
    return _section("daily", "Daily spend", chart, legend(series, colors), sub=sub)


def _bars(s: Statement, lines: Sequence[Mapping[str, Any]], by: str) -> str:
    colors = colors_for(_series(s)) if by == "app" else {}
    bars = [
        Bar(
            key=line["key"],
            label=line["label"],
            value=_exact(s, line),
            text=line[s.amount_column],
            color=colors.get(line["label"], PALETTE[-1]) if by == "app" else "#334155",
            flag=line.get("flag", ""),
            note=line.get("note", ""),
        )
        for line in sorted(lines, key=lambda line: (-_exact(s, line), line["key"]))
    ]
    return bar_chart(by, bars, currency=s.currency)


def _report_note(s: Statement, by: str) -> str:
    return f'<p class="sub">The lines of <code>{escape(_command(s, by))}</code>, in {escape(s.currency)}.</p>'


def _lines_table(s: Statement, amount: str) -> str:
    money_columns = _money_columns(s)
    head = "".join(f'<th class="num">{escape(label)}</th>' for _, label in TABLE_TOKENS)
    head += "".join(f'<th class="num">{escape(label)}</th>' for _, label in money_columns)
    span = 1 + len(TABLE_TOKENS) + len(money_columns)
    body: list[str] = []
    apps = {line["key"]: line for line in s.own_by_app.lines}
    for app_key, app in apps.items():
        cells = [line for line in s.detail if line["app_key"] == app_key]
        if not cells and not app["events"]:
            continue
        body.append(_row(app, money_columns, kind="app", label=app["label"]))
        for line in cells:
            body.append(_row(line, money_columns, kind="line", label=line["model"], app=line["app"]))
            body.append(f'<tr class="handle"><td colspan="{span}"><code>{escape(line["handle"])}</code></td></tr>')
    total = _row(s.totals, money_columns, kind="total", label="Total")
    note = ""
    if s.own_by_app is not s.by_app:
        note = (" In the report by app, unattributed-app charges are moved per the allocation policy; "
                "this table shows usage where it happened (same totals).")  # fmt: skip
    table = (
        f'<table class="grid lines"><thead><tr><th>App / model</th>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody><tfoot>{total}</tfoot></table>'
    )
    sub = ("Each app's model lines add up to the app's line, and the apps to the total. Under each line, the handle that "
           f"<code>chargeback explain</code> turns into the events behind it.{note}")  # fmt: skip
    return _section("lines", "Lines by app and model", table, sub=sub)


def _row(line: Mapping[str, Any], money_columns: Iterable[tuple[str, str]], *, kind: str, label: str, app: str = "") -> str:
    flag = '<span class="badge">UNPRICED</span>' if line.get("flag") else ""
    shown = label or "(unattributed)"
    first = f"<th>{escape(shown)} {flag}</th>" if kind != "line" else f"<td>{escape(shown)} {flag}</td>"
    cells = "".join(f'<td class="num" data-col="{key}" data-value="{int(line.get(key) or 0)}">{_n(line.get(key))}</td>' for key, _ in TABLE_TOKENS)
    cells += "".join(_money_cell(line, key) for key, _ in money_columns)
    data = f' data-row="{kind}"'
    if kind == "line":
        data += f' data-app="{attr(app)}" data-model="{attr(label)}" data-handle="{attr(line.get("handle", ""))}"'
    elif kind == "app":
        data += f' data-app="{attr(label)}" data-handle="{attr(line.get("handle", ""))}"'
    cls = f"{kind}{' unpriced' if line.get('flag') else ''}"
    return f'<tr class="{cls}"{data}>{first}{cells}</tr>'


def _attribution(s: Statement) -> str:
    if s.raw_facts_note:
        # Identity sources exist in raw events only: the console computes them off the page's path.
        pending = (f'<p class="sub" data-pending="raw-facts" role="status">Identity sources, identity conflicts, last request and '
                   f"last write: {escape(s.raw_facts_note)}. The downloaded statement always has them.</p>")  # fmt: skip
        return _section("attribution", "Attribution", pending, sub="Where this team's requests got their tenant, team and app (share of requests).")
    by_attribute: dict[str, list[dict[str, Any]]] = {}
    for row in s.identity:
        by_attribute.setdefault(row["attribute"], []).append(row)
    rows = []
    for attribute in ("tenant", "team", "app"):
        found = by_attribute.get(attribute, [])
        if not found:
            continue
        parts = [(r["source"], float(r["share"]), SOURCE_TEXT.get(r["source"], (r["source"], "#999999"))[1]) for r in found]
        words = " · ".join(
            f'<span data-source="{attr(r["source"])}" data-requests="{r["requests"]}">'
            f"{escape(SOURCE_TEXT.get(r['source'], (r['source'], ''))[0])} {r['share']:.1%} ({_n(r['requests'])})</span>"
            for r in found
        )
        rows.append(f'<tr data-attribute="{attribute}"><th>{attribute}</th><td>{share_bar(parts, name=f"identity-{attribute}")}</td><td>{words}</td></tr>')
    table = f'<table class="grid attribution"><tbody>{"".join(rows)}</tbody></table>' if rows else '<p class="sub">No usage in this period.</p>'
    notes = [
        (
            "The gateway records, for every request, where its tenant, team and app came from. An authenticated consumer "
            "is the accountable source; gateway tags are configuration; a header is only as good as the client that sent it "
            "(it is used only where trusted); default and not resolved are gaps."
        )
    ]
    conflicts = int(s.meta.get("identity_conflicts") or 0)
    notes.append(
        f"{_n(conflicts)} request(s) carried a header that disagreed with the resolved identity; the resolved value was kept."
        if conflicts
        else "No request carried a header that disagreed with the resolved identity."
    )
    if s.mode == "chargeback" and s.team_policy is not None:
        policy = s.team_policy
        line = s.team_line or {}
        received = str(line.get("allocated_in", "0.00"))
        if policy["strategy"] == "keep" or received == "0.00":
            notes.append(f"Usage without a team is not in this statement (team-level policy: {escape(policy['strategy'])}; "
                         "nothing of it is allocated to this team).")  # fmt: skip
        else:
            notes.append(
                f"Usage without a team is not in the lines above. The team-level allocation policy ({escape(_policy_words(s))}) "
                f"gives this team {escape(s.currency)} {money(received)} of it: the amounts box adds it, as the line of "
                "<code>chargeback report --by team --mode chargeback</code> for this team does."
            )
    if s.raw_facts_at is not None:
        notes.append(f"Identity sources and conflicts, last request and last write as read from the raw events at {_ts(s.raw_facts_at)}.")
    text = "".join(f"<p>{n}</p>" for n in notes)
    return _section("attribution", "Attribution", table, f'<div class="prose">{text}</div>',
                    sub="Where this team's requests got their tenant, team and app (share of requests).")  # fmt: skip


def _notes(s: Statement) -> str:
    sources = s.by_app.sources
    notes = [
        f"Same numbers as <code>{escape(_command(s, 'app'))}</code>: this statement is built from that report.",
        (
            "Costs are summed exactly and each money column is rounded once to cents (half up) by the largest-remainder "
            "method, so lines add up to totals to the cent."
        ),
        (
            f"Read from {_n(sources.get('days_from_daily_rollup'))} day(s) of daily rollups, "
            f"{_n(sources.get('hours_from_hourly_rollup'))} hour(s) of hourly rollups and "
            f"{_n(sources.get('hours_from_raw_events'))} hour(s) of raw events (rollups are used only where they are current)."
        ),
        (
            "Drill down: <code>chargeback explain HANDLE</code> lists the events behind a line, with identity sources and "
            "price provenance."
        ),
    ]
    if s.mode == "chargeback":
        for fee in s.by_app.policy.get("platform_fee", []):
            notes.append(f"Platform fee from {escape(fee['effective_from'])}: {escape(fee['per_request_usd'])} USD per request "
                         f"+ {escape(fee['uplift_percent'])}% of model cost.")  # fmt: skip
        if not s.by_app.policy.get("platform_fee"):
            notes.append("No platform fee applies in this period.")
        notes.append(f"Allocation config: {escape(s.by_app.policy.get('source', '(defaults)'))}.")
    else:
        notes.append("Showback: usage at list price (the public catalog price or a list override), for information; "
                     "what is charged is in the chargeback statement.")  # fmt: skip
    notes += [escape(w) for w in s.by_app.warnings if not w.startswith("UNPRICED")]  # that one has the box at the top
    items = "".join(f"<li>{n}</li>" for n in notes)
    return _section("notes", "Notes", f'<ul class="prose">{items}</ul>')


CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --accent:#0b3d6e; --bad:#b91c1c; --badbg:#fef2f2; }
* { box-sizing: border-box; }
html { background: #eef1f5; }
body { margin: 0; padding: 24px 0; color: var(--ink);
  font: 13px/1.45 "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif; }
.sheet { max-width: 1180px; margin: 0 auto; background: #fff; padding: 32px 40px 24px;
  box-shadow: 0 1px 3px rgba(0,0,0,.12); border-radius: 4px; }
h1 { font-size: 28px; margin: 4px 0 2px; letter-spacing: -.01em; }
h2 { font-size: 15px; margin: 0 0 4px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 11px; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.sub { color: var(--muted); margin: 0 0 10px; font-size: 12px; }
.masthead { display: flex; justify-content: space-between; gap: 32px; border-bottom: 3px solid var(--accent);
  padding-bottom: 16px; margin-bottom: 18px; }
.eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 11px; color: var(--accent); font-weight: 700; }
.period { font-size: 15px; color: var(--muted); margin-bottom: 10px; }
.meta { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.3fr); gap: 4px 28px; margin: 0; }
.meta div { display: flex; gap: 8px; }
.meta dt { color: var(--muted); min-width: 100px; }
.meta dd { margin: 0; }
.due { min-width: 250px; align-self: flex-start; background: #f8fafc; border: 1px solid var(--line);
  border-top: 4px solid var(--accent); padding: 14px 18px; text-align: right; }
.due-label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
.due-amount { font-size: 30px; font-weight: 700; font-variant-numeric: tabular-nums; white-space: nowrap; }
.due-amount .ccy { font-size: 15px; color: var(--muted); font-weight: 600; }
.due-sub { color: var(--muted); }
.due-flag { margin-top: 6px; color: var(--bad); font-weight: 700; font-size: 12px; }
.badge { display: inline-block; background: var(--bad); color: #fff; font-size: 10px; font-weight: 700;
  letter-spacing: .04em; padding: 1px 6px; border-radius: 3px; vertical-align: 1px; }
.alert { border: 2px solid var(--bad); background: var(--badbg); padding: 12px 16px; margin-bottom: 18px; border-radius: 4px; }
.alert h2 { color: var(--bad); }
.notice { border: 2px solid #d97706; background: #fffbeb; padding: 12px 16px; margin-bottom: 18px; border-radius: 4px; }
.notice p { margin: 4px 0 0; }
.alert p { margin: 4px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 4px; padding: 14px 16px; margin-bottom: 18px; }
.totals { display: grid; grid-template-columns: 1fr 380px; gap: 18px; margin-bottom: 18px; }
.totals .card { margin: 0; }
.tiles { display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; }
.tile { border: 1px solid var(--line); border-radius: 4px; padding: 10px 12px; }
.tile-label { color: var(--muted); font-size: 12px; }
.tile-value { font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tile-sub { color: var(--muted); font-size: 11px; }
.amounts table { width: 100%; border-collapse: collapse; margin: 6px 0 8px; }
.amounts th { text-align: left; font-weight: 400; padding: 5px 0; }
.amounts td { padding: 5px 0; font-size: 15px; }
.amounts tr.minor th, .amounts tr.minor td { color: var(--muted); font-size: 12px; padding-left: 12px; }
.amounts tr.subtotal th, .amounts tr.subtotal td { border-top: 1px solid var(--ink); font-weight: 600; }
.amounts tr.grand th, .amounts tr.grand td { border-top: 2px solid var(--ink); font-weight: 700; font-size: 17px; padding-top: 8px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; align-items: start; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 16px; padding: 0; margin: 6px 0 0 64px; font-size: 12px; }
.legend li { display: flex; align-items: center; gap: 6px; }
table.grid { width: 100%; border-collapse: collapse; }
.grid th, .grid td { padding: 4px 6px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
.grid thead th { font-size: 11px; color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--line); }
.grid .num { text-align: right; }
.lines tr.app th, .lines tr.app td { background: #f3f6fa; font-weight: 700; border-top: 1px solid #cbd5e1; }
.lines tr.line td:first-child { padding-left: 18px; }
.lines tr.handle td { border-bottom: 1px solid var(--line); padding: 0 6px 4px 18px; color: var(--muted); }
.lines tr.line td { border-bottom: 0; }
.lines tr.handle code { font-size: 9px; word-break: break-all; color: #6b7280; }
.lines tr.unpriced td, .lines tr.unpriced th { background: var(--badbg); }
.lines tfoot th, .lines tfoot td { border-top: 2px solid var(--ink); border-bottom: 0; font-weight: 700; padding-top: 6px; }
.compact td code { font-size: 9.5px; word-break: break-all; }
.attribution th { width: 70px; text-transform: capitalize; }
.attribution td:nth-child(2) { width: 340px; }
.prose { margin: 8px 0 0; padding-left: 18px; }
div.prose { padding-left: 0; }
.prose p, .prose li { margin: 0 0 5px; }
footer { color: var(--muted); font-size: 11px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print {
  html, body { background: #fff; padding: 0; }
  .sheet { box-shadow: none; max-width: none; padding: 0; }
  .card, .alert, tr { break-inside: avoid; }
  @page { size: A4 landscape; margin: 12mm; }
}
"""
