"""bench/bench_parsers.py measures what it says: every case, at the body size asked, parsed as provider usage.

No timing is asserted (speed is for `make bench`); the shape of what the benchmark
reports is, so a benchmark that silently skips a case or measures a tiny body fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SIZE = 4096


def test_every_case_is_measured_at_the_size_asked() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_parsers.py"), "--quick", "--sizes", str(SIZE)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    # The benchmark itself asserts each body parses to provider usage; a broken parser exits non-zero.
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout)
    cases = {(r["family"], r["format"]) for r in doc["results"]}
    assert len(cases) == len(doc["results"]) == 16
    assert {"openai.chat", "openai.responses", "openai.embeddings", "anthropic.messages", "gemini.generate_content",
            "bedrock.converse", "bedrock.invoke", "cohere.chat", "ollama.chat"} == {family for family, _ in cases}  # fmt: skip
    for row in doc["results"]:
        assert SIZE * 0.65 <= row["body_bytes"] <= SIZE * 1.5, row  # builders round to whole chunks/events
        assert row["iterations"] >= 50 and 0 < row["us_p50"] <= row["us_p99"], row
    assert doc["summary"]["max_p99_us_at_largest"] == max(r["us_p99"] for r in doc["results"])
