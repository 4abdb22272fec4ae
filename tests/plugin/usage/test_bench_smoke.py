"""bench/bench_parsers.py still runs and prints its JSON (no timing asserts here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_runs_quick() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_parsers.py"), "--quick", "--sizes", "1024"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    doc = json.loads(out)
    families = {r["family"] for r in doc["results"]}
    assert {"openai.chat", "anthropic.messages", "gemini.generate_content", "bedrock.converse", "cohere.chat", "ollama.chat"} <= families
    assert all(r["us_p99"] > 0 and r["mb_per_s"] > 0 for r in doc["results"])
