"""Render bench/results/latest.json as a readable page, goals beside the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PDK_GOAL = 4
OVERHEAD_GOAL = 1.5
INGEST_GOAL_EPS = 100_000
CEILING_GOAL = 0.7  # issue 20 (was 0.5)
TWO_PROCESS_GOAL = 1.7
PARSER_P99_GOAL_US = 1000
SSE_GOAL_MBPS = 50
REPORT_GOAL_MS = 250
RSS_GOAL_MB = 500


def _ceiling_cpu(ceiling: dict[str, Any], main: dict[str, Any]) -> str:
    """The ceiling's CPU per row beside the aggregator's per event (runs before this figure was kept have neither)."""
    rows, events = ceiling.get("cpu_us_per_row_by_thread"), main.get("cpu_us_per_event_by_thread")
    if not rows or not events:
        return ""
    return (f", {rows['total']} µs of CPU per row ({rows.get('python', 0)} in its Python thread) against the "
            f"aggregator's {events['total']} µs per event")


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(results: dict[str, Any]) -> str:
    out = ["# Benchmark results", ""]
    machine = results.get("machine", {})
    out += [f"Machine: {machine.get('cpus')} cores, Python {machine.get('python')}, load average at start "
            f"{machine.get('load_avg_at_start')}. Started {results.get('started_at')}"
            f"{' (quick smoke run: small sizes)' if results.get('quick') else ''}. "
            "Figures are from one run on a shared 2-core machine; compare the ratios, which pair each figure "
            "with its baseline measured in the same run.", ""]  # fmt: skip
    for section, renderer in (("plugin", _plugin), ("budgets", _budgets), ("parsers", _parsers), ("ingest", _ingest),
                              ("fleet", _fleet), ("dedup", _dedup), ("reports", _reports), ("analyst_sql", _analyst_sql),
                              ("console", _console),
                              ("soak", _soak)):  # fmt: skip
        data = results.get(section)
        if data is None:
            continue
        if data.get("_from_previous_run"):
            out += [f"_{section}: not rerun; figures from the run of {data['_from_previous_run']}._", ""]
        if data.get("_rerun_at"):
            out += [f"_{section}: rerun on its own at {data['_rerun_at']}._", ""]
        if "error" in data:
            out += [f"## {section}", "", "```", str(data["error"])[-1500:], "```", ""]
            continue
        out += renderer(data)
    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        out += ["", notes.read_text()]
    return "\n".join(out) + "\n"


def _analyst_sql(data: dict[str, Any]) -> list[str]:
    out = [f"## Analyst SQL through POST /v1/sql ({data['events']:,} events)", "",
           f"`SELECT 1` end to end (guard + a new read-only session): {data['select_1_ms']['median']} ms median. "
           "Exit 2 is a failure; 0 and 1 are answers (1: findings, unpriced usage).", "",
           "| read | exit | seconds | aggregator peak RSS growth MiB |", "|---|---|---|---|"]  # fmt: skip
    out += [f"| {name} | {r['exit']} | {r['seconds']} | {r['peak_rss_growth_mib']} |" for name, r in data["reads"].items()]
    out += ["", "| refused oversized answer | status | aggregator peak RSS growth MiB |", "|---|---|---|"]
    out += [f"| {name} | {r['status']} {r['kind']} | {r['peak_rss_growth_mib']} |" for name, r in data["oversized"].items()]
    return out + [""]


def _plugin(data: dict[str, Any]) -> list[str]:
    out = ["## 1. Plugin overhead (Kong harness, real plugin server, local upstream)", "",
           "Handler time = HandleEvent to \"ret\", PDK round trips included. Access runs on the request path; "
           "log runs after the client has its answer. `non_streaming`/`streaming`: `auto` on kong.yml's OpenAI "
           "route (behind ai-proxy); `non_streaming_plain`: `auto` on the plain route (no ai-proxy: the full access "
           "work).", "",
           "Back to back, each request's access overlaps the previous request's log phase (in the plugin server "
           "and in the one-process Python harness); *isolated*, each request waits for it: the access handler alone. "
           "Plugin server CPU: every thread of its process (handlers, RPC, sender) over the back-to-back run, per "
           "request: what one plugin server core pays for each request. Where a row ran several rounds, each alternating "
           "the no-op and ours, its ratios are the medians of the rounds (run by run below the table) and its "
           "milliseconds those of the round with the median back-to-back ratio.", "",
           "| mode / request | PDK calls/req (goal ≤ 4) | RPC round trips/req (no-op) | access p50/p99 ms (no-op) | "
           "log p50 ms (no-op) | access ratio p50 (goal ≤ 1.5×) / p99 | isolated: access p50/p99 ms (no-op) | "
           "isolated: access ratio p50 (goal ≤ 1.5×) / p99 | client p50 ratio | client p99 ratio | plugin server peak RSS MB (no-op) "
           "| plugin server CPU µs/req (no-op) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    log_only = {key: row for key, row in data.items() if not key.startswith("_") and "ai_chargeback_log" in row}
    for key, row in data.items():
        if key.startswith("_") or key in log_only:
            continue
        a, n = row["ai_chargeback"], row["noop"]
        p99_ratio = f" / {row['ratio_access_handler_p99']}×" if "ratio_access_handler_p99" in row else ""
        isolated = "| – | – "
        if "ratio_access_handler_p50_isolated" in row:
            ai, ni = a["isolated"]["handler"]["access"], n["isolated"]["handler"]["access"]
            ratio = row["ratio_access_handler_p50_isolated"]
            isolated = (f"| {ai['p50_ms']}/{ai['p99_ms']} ({ni['p50_ms']}/{ni['p99_ms']}) "
                        f"| {ratio}× ({_mark(ratio <= OVERHEAD_GOAL)}) / {row['ratio_access_handler_p99_isolated']}× ")  # fmt: skip
        out.append(
            f"| {key} | {a['pdk_calls_per_request']} ({_mark(a['pdk_calls_per_request'] <= PDK_GOAL)}) "
            f"| {a['rpc_round_trips_per_request']} ({n['rpc_round_trips_per_request']}) "
            f"| {a['handler']['access']['p50_ms']}/{a['handler']['access']['p99_ms']} ({n['handler']['access']['p50_ms']}/{n['handler']['access']['p99_ms']}) "
            f"| {a['handler']['log']['p50_ms']} ({n['handler']['log']['p50_ms']}) "
            f"| {row['ratio_access_handler_p50']}× ({_mark(row['ratio_access_handler_p50'] <= OVERHEAD_GOAL)}){p99_ratio} "
            f"{isolated}"
            f"| {row['ratio_client_latency_p50']}× | {row['ratio_client_latency_p99']}× "
            f"| {a['plugin_server_peak_rss_mb']} ({n['plugin_server_peak_rss_mb']}) "
            f"| {a.get('plugin_server_cpu_us_per_request', '–')} ({n.get('plugin_server_cpu_us_per_request', '–')}) |"
        )
    rounds = [f"- {key}: back to back {_each(row['rounds'], 'ratio_access_handler_p50')}; "
              f"alone {_each(row['rounds'], 'ratio_access_handler_p50_isolated')}; "
              f"client p50 {_each(row['rounds'], 'ratio_client_latency_p50')}"
              for key, row in data.items() if not key.startswith("_") and key not in log_only and len(row.get("rounds", ())) > 1]  # fmt: skip
    if rounds:
        out += ["", "Access ratios p50, round by round:", "", *rounds]
    whys = [why for key, row in data.items() if not key.startswith("_") and key not in log_only for why in _plugin_misses(key, row)]
    if whys:
        out += ["", "Why each miss:", "", *whys]
    if log_only:
        out += ["", "### 1a. Log-only plugin (`ai-chargeback-log`) on kong.yml's openai-tools route (ai-proxy, non-streaming)", "",
                "Three fronts driven in turn, request by request, in rotating order: the route with no plugin of ours, with the no-op "
                "Python plugin (access + log), with `ai-chargeback-log`. Goal: ≤ 0.1 ms added at p50 over no plugin.", "",
                "| mode | access handlers/req (no-op) | RPC round trips/req (no-op) | client p50/p99 ms: ours | no plugin | no-op "
                "| added p50/p99 ms vs no plugin | added p50/p99 ms vs no-op | goal | why |",
                "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for key, row in log_only.items():
            ours, bare, noop = row["ai_chargeback_log"], row["no_plugin"], row["noop"]
            c = {name: f"{r['client_latency']['p50_ms']}/{r['client_latency']['p99_ms']}" for name, r in
                 (("ours", ours), ("bare", bare), ("noop", noop))}  # fmt: skip
            out.append(
                f"| {key} | {ours['access_handlers_per_request']} ({noop['access_handlers_per_request']}) "
                f"| {ours['rpc_round_trips_per_request']} ({noop['rpc_round_trips_per_request']}) "
                f"| {c['ours']} | {c['bare']} | {c['noop']} "
                f"| {row['added_p50_ms_vs_no_plugin']}/{row['added_p99_ms_vs_no_plugin']} "
                f"| {row['added_p50_ms_vs_noop']}/{row['added_p99_ms_vs_noop']} "
                f"| {_mark(row['goal_met'])} | {row['reason']} |"
            )
    return out + [""]


def _each(rounds: list[dict[str, Any]], name: str) -> str:
    return ", ".join(f"{r[name]:g}×" for r in rounds)


def _plugin_misses(key: str, row: dict[str, Any]) -> list[str]:
    """The reason for each missed plugin goal of one row, from the row's own figures."""
    ours = row["ai_chargeback"]
    by_phase = ours["pdk_calls_per_request_by_phase"]
    in_access = by_phase.get("access", 0)
    calls = ", ".join(f"{phase} {count:g}" for phase, count in sorted(by_phase.items()))
    out = []
    if ours["pdk_calls_per_request"] > PDK_GOAL:
        plain = (" Without ai-proxy the plugin reads the request body itself (get_body; Content-Length and "
                 "get_raw_body when client_body_buffer_size exceeds max_body_bytes: kong_state.py), then turns "
                 "buffering on; log reads serialize() and the buffered answer.") if "plain" in key else ""  # fmt: skip
        out.append(f"- {key}, PDK calls: {ours['pdk_calls_per_request']:g} per request ({calls}).{plain}")
    ratio, alone = row["ratio_access_handler_p50"], row.get("ratio_access_handler_p50_isolated")
    own = (f"{in_access:g} PDK round trips in access, where the no-op makes none" if in_access >= 0.5
           else f"no PDK call in access ({in_access:g}/request): the access handler's own Python work")  # fmt: skip
    if ratio > OVERHEAD_GOAL:
        if in_access >= 0.5:
            why = f"{own}; each is an RPC to Kong and back (~0.15 ms of plugin server CPU here)"
        elif alone is not None and alone <= OVERHEAD_GOAL:
            why = (f"no PDK call in access ({in_access:g}/request); back to back, its RPC waits behind the previous "
                   f"request's log phase in the plugin server and in the one-process harness; alone, {alone}× (met)")  # fmt: skip
        else:
            why = own
        out.append(f"- {key}, access p50 back to back {ratio}×: {why}.")
    if alone is not None and alone > OVERHEAD_GOAL:
        out.append(f"- {key}, access p50 alone {alone}×: {own}.")
    return out


def _budgets(data: dict[str, Any]) -> list[str]:
    cost, over = data["cost"], data["overshoot"]
    off = cost["off"]
    out = ["## 1b. Budget enforcement in the plugin (gevent, non-streaming, same harness; docs/budgets.md)", "",
           "| run | access PDK calls/req | access p50/p99 ms | added to access p50 | access ratio | client p50 ratio |",
           "|---|---|---|---|---|---|",
           f"| off | {off['pdk_calls_per_request_by_phase'].get('access', 0)} | {off['handler']['access']['p50_ms']}/"
           f"{off['handler']['access']['p99_ms']} | | 1× | 1× |"]  # fmt: skip
    for name, label in (("on_none_exhausted", "on, none exhausted"), ("on_other_exhausted", "on, another team exhausted"),
                        ("on_refused", "on, this team refused (429)")):  # fmt: skip
        run = cost[name]
        out.append(f"| {label} | {run['pdk_calls_per_request_by_phase'].get('access', 0)} | {run['handler']['access']['p50_ms']}/"
                   f"{run['handler']['access']['p99_ms']} | {run['access_p50_added_ms']} ms | {run['ratio_access_handler_p50']}× "
                   f"| {run['ratio_client_latency_p50']}× |")  # fmt: skip
    out += ["", f"Overshoot: one team at {over['rate_req_s']} req/s crossed a {over['limit_requests']}-request token budget; "
            f"{over['admitted_past_limit']} requests were admitted past it, the first 429 came "
            f"{over['crossing_to_first_429_ms']} ms after the crossing request; the other team was refused "
            f"{over['other_team_refused']} times; longest budget evaluation {over['longest_evaluation_ms']} ms "
            f"({over['config']}).", ""]  # fmt: skip
    return out


def _parsers(data: dict[str, Any]) -> list[str]:
    out = ["## 2. Usage parsers (µs per response, MB/s)", "",
           f"Load average during the run: {data.get('load_average')}. Goals: p99 < {PARSER_P99_GOAL_US} µs at 100 KB; "
           f"≥ {SSE_GOAL_MBPS} MB/s for SSE.", "",
           "| family | format | body bytes | p50 µs | p99 µs | MB/s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in data.get("results", []):
        out.append(
            f"| {row['family']} | {row['format']} | {row['body_bytes']} | {row['us_p50']} | {row['us_p99']} | {row['mb_per_s']} |"
        )
    if data.get("summary"):
        out += ["", "Summary: `" + json.dumps(data["summary"]) + "`"]
    return out + [""]


def _without_lookup(run: dict[str, Any]) -> str:
    if "inserts_without_lookup" not in run:  # (runs before the lookup could be skipped)
        return ""
    out = f" ({run['inserts_without_lookup']} of {run['inserts']} inserts needed no dedup lookup)"
    if "writer_busy_share" in run:  # (runs before the writer reported its busy time)
        out += (f"; the writer was busy {run['writer_busy_share']:.0%} of the run, {run['insert_share']:.0%} of it in the "
                "engine's insert")  # fmt: skip
    return out


def _ingest(data: dict[str, Any]) -> list[str]:
    main, ceiling = data["main"], data["ceiling_raw_insert"]
    ratio = data["ratio_to_ceiling"]
    out = ["## 3. Aggregator ingest (embedded store)", "",
           f"Main: {main['streams']} concurrent gRPC streams, {main['batch_events']} events/batch, flush interval "
           f"{main['flush_interval_ms']} ms: **{main['events_per_s']:,} events/s** "
           f"(goal ≥ {INGEST_GOAL_EPS:,}: {_mark(main['events_per_s'] >= INGEST_GOAL_EPS)}), "
           f"{main['events_per_insert']:,} events per insert{_without_lookup(main)}, aggregator peak RSS "
           f"{main['aggregator_peak_rss_mb']} MB.{_repeats(data.get('repeats'))}", "",
           f"Ceiling, same rows, raw clickhouse-connect insert of {ceiling['rows_per_insert']:,} rows per insert in a fresh "
           f"process: {ceiling['rows_per_s']:,} rows/s{_ceiling_cpu(ceiling, main)}. Ratio {ratio} (goal ≥ {CEILING_GOAL}: "
           f"{_mark(ratio >= CEILING_GOAL)}).", "",
           "| events | streams | events/batch | flush ms | events/s | events/insert | peak RSS MB |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in [main, *data.get("sensitivity", [])]:
        out.append(f"| {row.get('shape', 'minimal')} | {row['streams']} | {row['batch_events']} | {row['flush_interval_ms']} "
                   f"| {row['events_per_s']:,} | {row['events_per_insert']:,} | {row['aggregator_peak_rss_mb']} |")  # fmt: skip
    pair = data.get("two_processes")
    if pair:
        scaling = pair["scaling"]
        out += ["", f"Two aggregator processes on this host, each with its own embedded store (chDB takes one process per "
                f"data directory; no ClickHouse server here), each sent the main run's load at the same time: "
                f"{pair['events_per_s_each'][0]:,} + {pair['events_per_s_each'][1]:,} events/s, "
                f"**{pair['events_per_s_combined']:,} events/s combined**, {scaling}× the single process of this run "
                f"(goal ≥ {TWO_PROCESS_GOAL}×: {_mark(scaling >= TWO_PROCESS_GOAL)}); peak RSS "
                f"{' and '.join(str(r) for r in pair['aggregator_peak_rss_mb'])} MB."]  # fmt: skip
    per_core = data.get("two_processes_one_core_each")
    if per_core:
        single, pinned = per_core["single_one_core"], per_core["pair_one_core_each"]
        out += ["", f"The same, each process held to one core of its own (the load generator is not held): one aggregator "
                f"on one core {single['events_per_s']:,} events/s; two, one core each, {pinned['events_per_s_each'][0]:,} + "
                f"{pinned['events_per_s_each'][1]:,} = **{pinned['events_per_s_combined']:,} events/s**, {pinned['scaling']}× "
                f"(what a second process with a core of its own adds; not the goal's figure above, whose single process "
                f"keeps ~1.5 of this host's 2 cores busy alone)."]  # fmt: skip
    burst = data.get("burst")
    if burst:
        out += ["", _burst(f"Burst (issue 16): {burst['events']:,} events", burst)]
    shaped = data.get("plugin_shaped")
    if shaped:
        run, shaped_ceiling, shaped_ratio = shaped["main"], shaped["ceiling_raw_insert"], shaped["ratio_to_ceiling"]
        out += ["", f"**Events as the plugin sends them** ({run['event_bytes']} bytes each on the wire, against "
                f"{main.get('event_bytes', '~180')} for the rows above: consumer, credential fingerprint, route, service, gateway "
                f"node, client address, request and trace ids, latencies, tags), same streams and batches: "
                f"**{run['events_per_s']:,} events/s** (goal ≥ {INGEST_GOAL_EPS:,}: {_mark(run['events_per_s'] >= INGEST_GOAL_EPS)}), "
                f"{run['events_per_insert']:,} events per insert{_without_lookup(run)}, peak RSS {run['aggregator_peak_rss_mb']} MB. "
                f"Ceiling, the same rows: {shaped_ceiling['rows_per_s']:,} rows/s{_ceiling_cpu(shaped_ceiling, run)}. "
                f"Ratio {shaped_ratio} (goal ≥ {CEILING_GOAL}: {_mark(shaped_ratio >= CEILING_GOAL)})."
                f"{_repeats(shaped.get('repeats'))}"]  # fmt: skip
        if shaped.get("burst"):
            out += ["", _burst(f"Burst of them: {shaped['burst']['events']:,} events", shaped["burst"])]
    verdicts = data.get("goals")
    if verdicts:
        out += ["", "Issue 20's goals:", ""]
        for name, goal in verdicts.items():
            out.append(f"- {name}: {goal['value']} (goal {goal['goal']}): {_mark(goal['met'])}"
                       + ("" if goal["met"] else f" — {goal['reason']}"))  # fmt: skip
    return out + [""]


def _repeats(spread: dict[str, Any] | None) -> str:
    """The alternated runs behind a median figure (older results have one run and no spread)."""
    if not spread or len(spread.get("events_per_s", [])) < 2:
        return ""
    return (f" The median of {len(spread['events_per_s'])} runs alternated with the ceiling: "
            f"{', '.join(f'{eps:,}' for eps in spread['events_per_s'])} events/s against ceilings of "
            f"{', '.join(f'{rows:,}' for rows in spread['ceiling_rows_per_s'])} rows/s (ratios run by run: "
            f"{', '.join(str(r) for r in spread['ratios'])}); the figures below are the median run and the median ceiling.")


def _burst(lead: str, burst: dict[str, Any]) -> str:
    """A burst run's line: all its events at once, and the aggregator's peak RSS against the goal."""
    rss = burst["aggregator_peak_rss_mb"]
    return (f"{lead} from {burst['streams']} streams in {burst['batch_events']:,}-event batches, all at once: "
            f"{burst['events_per_s']:,} events/s, {burst['events_per_insert']:,} events per insert, aggregator peak "
            f"RSS **{rss} MB** (goal < {RSS_GOAL_MB}: {_mark(rss < RSS_GOAL_MB)})"
            + (f": {burst['rss_at_peak_anon_mb']} MB the process's own (RssAnon), {burst['rss_at_peak_file_mb']} MB "
               f"mapped files (RssFile, chDB's library pages); RssAnon max {burst['rss_anon_max_mb']} MB."
               if "rss_at_peak_anon_mb" in burst else "."))  # fmt: skip


def _fleet(data: dict[str, Any]) -> list[str]:
    ack = data["ack_ms"]
    goal_ms = data["flush_interval_ms"] + 1000  # the flush interval plus store time (about a second here, under load)
    all_acked = data["batches_acked"] == data["batches_sent"] and not data["failures"]
    return ["## Fleet: many sender streams on one aggregator (issue 16)", "",
            f"{data['streams']:,} streams from {data['client_processes']} client processes, each sending a "
            f"{data['events_per_batch']}-event batch every ~{data['send_interval_s']} s: the aggregator held "
            f"**{int(data['streams_open_max']):,} streams at once** (goal ≥ 2,000: {_mark(data['streams_open_max'] >= 2000)}); "
            f"{data['batches_acked']:,} of {data['batches_sent']:,} batches acked ({_mark(all_acked)}), "
            f"{data['events_stored']:,} of {data['events']:,} events stored. Send → ack: p50 {ack['p50']} ms, p99 {ack['p99']} ms, "
            f"max {ack['max']} ms against a {data['flush_interval_ms']} ms flush interval (goal: within it plus store time, "
            f"≈ {goal_ms} ms: {_mark(ack['p99'] <= goal_ms)}). Aggregator peak RSS {data['aggregator_peak_rss_mb']} MB "
            f"({_mark(data['aggregator_peak_rss_mb'] < RSS_GOAL_MB)}). Load average at the end: {data.get('load_average')}.", ""]  # fmt: skip


def _dedup(data: dict[str, Any]) -> list[str]:
    counts = data["counts"]
    first = data["first_pass"]
    return ["## Exactly once at scale (issue 16)", "",
            f"{data['events']:,} distinct events ({first['events_per_s']:,} events/s over {data['streams']} streams), then "
            f"{data['replays_identical']:,} identical and {data['replays_altered']:,} altered replays drawn from the whole "
            "range, before and after a restart of the aggregator.", "",
            f"Raw rows {counts['raw']:,}, distinct ids {counts['distinct']:,}, rows after FINAL {counts['final']:,}; "
            f"conflict rows {counts['conflict_rows']:,}; altered versions billed {counts['altered_versions_billed']}. "
            f"Acks before the restart: `{json.dumps(data['replay_before_restart'])}`; after: "
            f"`{json.dumps(data['replay_after_restart'])}`. **Exactly once: {_mark(bool(data['exactly_once']))}.** "
            f"Aggregator peak RSS {data.get('aggregator_peak_rss_mb')} MB.", ""]  # fmt: skip


def _reports(data: dict[str, Any]) -> list[str]:
    return ["## 4. Reports and FOCUS export", "", f"Goal: report < {REPORT_GOAL_MS} ms at 10M events.", "",
            "```json", json.dumps({k: v for k, v in data.items() if not k.startswith("_")}, indent=2)[:6000], "```", ""]  # fmt: skip


def _console(data: dict[str, Any]) -> list[str]:
    out = [
        "## Console pages (server time, embedded store)",
        "",
        f"Goal: every page < {data.get('goal_ms', 300)} ms server time at 10M events.",
        "",
    ]
    for key, size in data.items():
        if not key.startswith("events_"):
            continue
        out += [
            f"{size['events']:,} events over {size['days']} days; analyses (readiness, governance) finished in "
            f"{size.get('analyses_seconds')} s after the first request. Baseline in the same run: `report --by team` "
            f"{size.get('baseline_report_team_median_ms')} ms (median); 'reports' = page time / baseline.",
            "",
            "First request: the page read the store (its queries, as Server-Timing names them); later requests of an "
            "unchanged store may be answered from kept answers (median).",
            "",
            "| page | status | server median ms | server max ms | first request ms | first request's store share | "
            "client median ms | reports | bytes | goal (median) | goal (first request) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {name} | {p['status']} | {p['server_median_ms']} | {p['server_max_ms']} | {p.get('server_first_ms', '')} | "
            f"{p.get('store_first', '')} | {p['client_median_ms']} | {p.get('reports_worth', '')} | {p['bytes']} | {p['goal']} | {p.get('goal_first_request', '')} |"
            for name, p in size["pages"].items()
        ]
        out.append("")
    return out


def _soak(data: dict[str, Any]) -> list[str]:
    agg, plug = data["aggregator_rss_mb_first_last_max"], data["pluginserver_rss_mb_first_last_max"]
    ok = all(isinstance(v, (int, float)) and v < RSS_GOAL_MB for v in (agg[2], plug[2]))
    return ["## 5. Soak (steady rate, RSS over time)", "",
            f"{data['minutes']} min at {data['rate_rps']} req/s: {data['requests']} requests, {data['errors']} errors. "
            f"Aggregator RSS first/last/max {agg} MB; plugin server {plug} MB "
            f"(goal flat and < {RSS_GOAL_MB} MB: {_mark(ok)})"
            + (f"; aggregator RssAnon max {data['aggregator_anon_mb_max']} MB." if "aggregator_anon_mb_max" in data else "."), "",
            "| t (s) | aggregator RSS MB | of it RssAnon / RssFile | plugin server RSS MB |", "|---|---|---|---|",
            *[f"| {s['t_s']} | {s['aggregator_rss_mb']} | {s.get('aggregator_anon_mb', '–')} / {s.get('aggregator_file_mb', '–')} "
              f"| {s['pluginserver_rss_mb']} |" for s in data.get("samples", [])], ""]  # fmt: skip
