"""Analyst SQL through a running aggregator: the product's reads within the analyst limits, and what oversized answers cost.

Generates events as bench_reports.py does, starts `chargeback serve` on that
store (so every read goes through POST /v1/sql: guard, a new read-only session
per query, spooled answer), then times and sizes:

* every report, governance check, shipped analyst query and the FOCUS export
  through the CLI, as an operator would run them, with their outcome;
* answers the endpoint must refuse (past the row limit, the answer size, the
  memory limit): the aggregator's peak RSS before and after each;
* the endpoint's own cost on a trivial query (guard + session), median of runs.

Nothing is asserted. Prints one JSON line. ``--quick``: 100k events.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_reports import DAYS, generate  # noqa: E402
from support.aggregator_fixtures import free_port, wait_http_ok  # noqa: E402

from ai_chargeback_aggregator.analytics import queries  # noqa: E402
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters  # noqa: E402
from ai_chargeback_aggregator.cli.main import main as cli  # noqa: E402
from ai_chargeback_aggregator.rollups.maintainer import day_start  # noqa: E402
from ai_chargeback_aggregator.store.clickhouse import Store  # noqa: E402

TOKEN = "bench-analyst-token"
OVERSIZED = {
    "2M rows (row limit)": "SELECT number FROM numbers(2000000)",
    "900k rows of 1 KB (answer size)": "SELECT number, repeat('x', 1000) FROM numbers(900000)",
    "1,000 cells of 1 MB (memory limit)": "SELECT repeat('x', 1000000) FROM numbers(1000)",
}


def peak_rss_mib(pid: int) -> int:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) // 1024


def post(url: str, sql: str) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/v1/sql", data=json.dumps({"sql": sql}).encode(), method="POST",
                                     headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            response.read()
            return response.status, "ok"
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()).get("kind", "?")


def run_cli(args: list[str]) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(args)
    result: dict[str, Any] = {"exit": code, "seconds": round(time.perf_counter() - started, 2)}
    if code not in (0, 1):
        result["error"] = err.getvalue().strip().splitlines()[-1:] or ["?"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    total = 100_000 if args.quick else args.events
    workdir = Path(tempfile.mkdtemp(prefix="bench-analyst-"))
    store_path = workdir / "store"
    first = (datetime.now(UTC) - timedelta(days=DAYS + 1)).date()
    last = first + timedelta(days=DAYS - 1)
    store = Store(f"chdb://{store_path}")
    store.migrate()
    result: dict[str, Any] = {"events": total, "generate_s": round(generate(store, total, day_start(first)), 1)}
    store.close()

    http_listen = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "CHARGEBACK_SQL_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn", f"chdb://{store_path}",
                                "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", http_listen],
                               env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "serve.log", "wb"))  # noqa: SIM115  # fmt: skip
    url = f"http://{http_listen}"
    try:
        wait_http_ok(f"{url}/readyz", timeout_s=600)
        remote = ["--aggregator", url, "--sql-token", TOKEN]
        period = ["--from", first.isoformat(), "--to", last.isoformat()]
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            post(url, "SELECT 1")
            samples.append((time.perf_counter() - started) * 1000)
        result["select_1_ms"] = {"median": round(statistics.median(samples), 1), "min": round(min(samples), 1)}
        result["rss_mib_at_start"] = peak_rss_mib(process.pid)

        workloads: dict[str, list[str]] = {
            "report --by team (raw events)": ["report", "--by", "team", *period],
            "report --by consumer --mode chargeback": ["report", "--by", "consumer", "--mode", "chargeback", *period],
            "governance all": ["governance", "all", *period, "--format", "json"],
            "export focus (parquet)": ["export", "focus", *period, "--out", str(workdir / "focus.parquet")],
        }
        for name in queries.names():
            text = queries.text(name)
            dates = "{start:Date}" in text  # else DateTime64 bounds
            params = {"start": f"{first}" if dates else f"{first} 00:00:00", "end": f"{last}" if dates else f"{last} 00:00:00",
                      "tenant": "", "limit": "10", "month": str(last)}  # fmt: skip
            workloads[f"sql --query {name}"] = ["sql", "--query", name, "--format", "csv",
                                                *[f"--param={p}={params[p]}" for p in sorted(sql_parameters(text) - {"db"})]]  # fmt: skip
        reads: dict[str, Any] = {}
        for label, command in workloads.items():
            before = peak_rss_mib(process.pid)
            reads[label] = {**run_cli([*command, *remote]), "peak_rss_growth_mib": peak_rss_mib(process.pid) - before}
        result["reads"] = reads

        oversized: dict[str, Any] = {}
        for label, sql in OVERSIZED.items():
            before = peak_rss_mib(process.pid)
            started = time.perf_counter()
            status, kind = post(url, sql)
            oversized[label] = {"status": status, "kind": kind, "seconds": round(time.perf_counter() - started, 1),
                                "peak_rss_growth_mib": peak_rss_mib(process.pid) - before}  # fmt: skip
        result["oversized"] = oversized
        result["rss_mib_peak"] = peak_rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=120)
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
