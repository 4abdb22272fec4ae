"""bench/bench_reports.py's pricer case runs against the pricer as it is: a column the pricer
starts to need (policy_outcome did) breaks this test, not the next `make bench` run."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"


def test_the_enrich_benchmark_runs_against_the_current_pricer() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from bench_reports import bench_enrich
    finally:
        sys.path.remove(str(BENCH))
    result = bench_enrich(rows=500)
    assert result["rows"] == 500 and result["rows_per_s"] > 0
