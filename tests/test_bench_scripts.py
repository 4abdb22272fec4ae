"""Every script `make bench` runs imports cleanly.

A section that fails to import only shows up as a traceback in bench/results/latest.md,
hours after the change that broke it (bench_budgets once imported a name bench_plugin had
renamed). Importing each one here costs a second and catches that at `make test`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_every_bench_script_imports() -> None:
    modules = sorted(path.stem for path in BENCH.glob("*.py"))
    assert {"run", "report_md", "bench_budgets", "bench_plugin", "bench_ingest"} <= set(modules)
    probe = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    run = subprocess.run([sys.executable, "-c", probe, *modules], cwd=BENCH, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]


def _plugin_row(*, pdk: float, by_phase: dict[str, float], ratio: float, alone: float) -> dict[str, object]:
    return {"ai_chargeback": {"pdk_calls_per_request": pdk, "pdk_calls_per_request_by_phase": by_phase},
            "ratio_access_handler_p50": ratio, "ratio_access_handler_p50_isolated": alone}  # fmt: skip


def test_each_missed_plugin_goal_gets_its_reason_from_the_rows_own_figures(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    import report_md

    met = _plugin_row(pdk=3.0, by_phase={"log": 3.0}, ratio=1.4, alone=1.2)
    assert report_md._plugin_misses("gevent/non_streaming", met) == []
    overlap = _plugin_row(pdk=1.0, by_phase={"log": 1.0}, ratio=1.6, alone=1.1)
    (why,) = report_md._plugin_misses("gevent/streaming", overlap)
    assert "1.6×" in why and "previous request's log phase" in why and "alone, 1.1× (met)" in why
    plain = _plugin_row(pdk=5.0, by_phase={"access": 3.0, "log": 2.0}, ratio=4.1, alone=2.9)
    calls, back_to_back, alone = report_md._plugin_misses("gevent/non_streaming_plain", plain)
    assert "5 per request (access 3, log 2)" in calls and "Content-Length" in calls
    assert "4.1×" in back_to_back and "3 PDK round trips in access" in back_to_back
    assert "alone 2.9×" in alone and "3 PDK round trips in access" in alone


def test_a_plugin_row_is_judged_on_the_median_of_its_rounds(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_plugin
    import report_md

    def run(b2b: float, alone: float, client: float) -> dict[str, object]:
        return {"ratio_access_handler_p50": b2b, "ratio_access_handler_p50_isolated": alone,
                "ratio_client_latency_p50": client, "ai_chargeback": {"marker": b2b}}  # fmt: skip

    row = bench_plugin.median_of_rounds([run(2.08, 1.0, 1.3), run(1.41, 1.4, 1.1), run(1.48, 1.2, 1.2)])
    assert (row["ratio_access_handler_p50"], row["ratio_access_handler_p50_isolated"], row["ratio_client_latency_p50"]) == (1.48, 1.2, 1.2)
    assert row["ai_chargeback"] == {"marker": 1.48}  # the milliseconds come from the median round
    assert [r["ratio_access_handler_p50"] for r in row["rounds"]] == [2.08, 1.41, 1.48]
    assert report_md._each(row["rounds"], "ratio_access_handler_p50") == "2.08×, 1.41×, 1.48×"
