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
