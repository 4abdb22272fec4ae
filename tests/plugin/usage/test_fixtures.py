"""The fixture corpus: tests/fixtures/<provider>/<api>/<scenario>.(json|sse|ndjson|bin).

Beside each scenario, ``<scenario>.expected.json`` holds what the exchange
looked like (path, host, content type and encoding, headers, status, requested
model, optional Azure deployment map) and the expected UsageRecord fields under
``expected`` (only the fields listed are compared; ``billable_extras`` as a
dict). ``_arithmetic`` explains each number, as the comments do in the unit
tests. ``.bin`` files are built by ``tests/fixtures/build.py`` (committed
builder + committed output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ai_chargeback_plugin.usage import Exchange, parse_usage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SUFFIXES = (".json", ".sse", ".ndjson", ".bin")


def _cases() -> list[Any]:
    cases = []
    for expected in sorted(FIXTURES.rglob("*.expected.json")):
        stem = expected.name[: -len(".expected.json")]
        bodies = [p for p in expected.parent.iterdir() if p.name != expected.name and p.suffix in SUFFIXES and p.name[: -len(p.suffix)] == stem]
        assert len(bodies) == 1, f"{expected}: expected exactly one body file, found {bodies}"
        cases.append(pytest.param(bodies[0], expected, id=str(bodies[0].relative_to(FIXTURES))))
    return cases


CASES = _cases()


def load_case(body_path: Path, expected_path: Path) -> tuple[Exchange, dict[str, Any], dict[str, Any]]:
    spec = json.loads(expected_path.read_text())
    exchange = Exchange(
        path=spec["path"],
        response_body=body_path.read_bytes(),
        content_type=spec.get("content_type", ""),
        content_encoding=spec.get("content_encoding", ""),
        response_headers={k.lower(): v for k, v in spec.get("headers", {}).items()},
        status=spec.get("status", 200),
        host=spec.get("host", ""),
        provider=spec.get("provider", "auto"),
        api_family=spec.get("api_family", "auto"),
        requested_model=spec.get("requested_model", ""),
    )
    return exchange, spec, spec["expected"]


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("body_path", "expected_path"), CASES)
def test_fixture(body_path: Path, expected_path: Path) -> None:
    exchange, spec, expected = load_case(body_path, expected_path)
    record = parse_usage(exchange, deployment_models=spec.get("deployment_models"))
    actual = {
        "source": record.source.value,
        "provider": record.provider,
        "api_family": record.api_family,
        "input_tokens": record.input_tokens,
        "cached_input_tokens": record.cached_input_tokens,
        "cache_write_input_tokens": record.cache_write_input_tokens,
        "output_tokens": record.output_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "billable_extras": dict(record.billable_extras),
        "served_model": record.served_model,
        "service_tier": record.service_tier,
        "streaming": record.streaming,
        "note": record.note,
    }
    assert {k: actual[k] for k in expected} == expected
