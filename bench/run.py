"""`make bench`: every benchmark in its own process, one after another (2 noisy cores:
nothing else should run meanwhile), then bench/results/latest.json and latest.md.

Every speed figure is paired with a baseline measured in the same run: the no-op
plugin for plugin overhead, a raw clickhouse-connect insert for ingest. Nothing
here asserts; the notes in latest.md say which goals are met and by how much.

    python bench/run.py [--quick] [--skip soak,...] [--soak-minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run_json(script: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    started = time.time()
    process = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                             timeout=timeout_s, cwd=HERE)  # fmt: skip
    elapsed = round(time.time() - started, 1)
    if process.returncode != 0:
        return {"error": process.stderr[-3000:], "seconds": elapsed}
    try:
        result = json.loads(process.stdout)
    except ValueError:
        lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            return {"error": "no JSON output", "stdout": process.stdout[-2000:], "seconds": elapsed}
    result["_seconds"] = elapsed
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated: plugin,budgets,parsers,ingest,fleet,dedup,reports,analyst_sql,"
        "console,soak (a skipped section keeps its figures from the previous run, marked so)",
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    quick = ["--quick"] if args.quick else []
    plan = [
        ("plugin", "bench_plugin.py", quick, 1800),
        ("budgets", "bench_budgets.py", quick, 1800),
        ("parsers", "bench_parsers.py", quick, 1800),
        ("ingest", "bench_ingest.py", quick, 3600),
        ("fleet", "bench_fleet.py", quick, 3600),
        ("dedup", "bench_dedup.py", quick, 7200),
        ("reports", "bench_reports.py", quick, 3600),
        ("analyst_sql", "bench_analyst_sql.py", quick, 3600),
        ("console", "bench_console.py", quick, 3600),
        ("soak", "bench_soak.py", ["--minutes", str(0.5 if args.quick else args.soak_minutes)], 7200),
    ]
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_start": os.getloadavg(),
        },  # fmt: skip
        "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    previous = json.loads((RESULTS / "latest.json").read_text()) if (RESULTS / "latest.json").exists() else {}
    for name, script, extra, timeout_s in plan:
        if name in skip:
            if isinstance(previous.get(name), dict):
                kept = {k: v for k, v in previous[name].items() if k != "_rerun_at"}
                ran_at = previous[name].get("_rerun_at") or previous[name].get("_from_previous_run") or previous.get("started_at", "?")
                results[name] = {**kept, "_from_previous_run": ran_at}
            continue
        if not (HERE / script).exists():
            results[name] = {"error": f"{script} missing"}
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results[name] = run_json(script, extra, timeout_s)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")  # keep what is done
    from report_md import render

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")  # with the sections carried over
    (RESULTS / "latest.md").write_text(render(results))
    print((RESULTS / "latest.md").read_text())
    failed = [name for name, *_ in plan if name not in skip and isinstance(results.get(name), dict) and "error" in results[name]]
    for name in failed:
        print(f"bench: {name} FAILED (its error is in latest.md)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
