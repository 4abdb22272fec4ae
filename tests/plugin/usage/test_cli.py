"""`ai-chargeback-usage parse` prints what the plugin would meter, using the same functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_chargeback_plugin.usage import Exchange, parse_usage
from ai_chargeback_plugin.usage.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["parse", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_parse_stream_with_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = tmp_path / "req.json"
    req.write_text('{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}')
    resp = FIXTURES / "anthropic/messages/stream_server_tools.sse"
    code, out = run(capsys, "--path", "/v1/messages", "--request", str(req), "--response", str(resp), "--header", "Content-Type: text/event-stream")
    assert code == 0
    assert out["facts"]["api_family"] == "anthropic.messages" and out["facts"]["streaming"] is True
    assert out["request_rewritten"] is False
    usage = out["usage"]
    expected = parse_usage(Exchange("/v1/messages", resp.read_bytes(), content_type="text/event-stream"))
    assert usage["input_tokens"] == expected.input_tokens == 10682
    assert usage["output_tokens"] == 510 and usage["billable_extras"] == {"web_search_requests": 1}
    assert usage["source"] == "provider" and usage["total_tokens"] == 11192


def test_parse_shows_injection_and_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = tmp_path / "req.json"
    req.write_text('{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}')
    code, out = run(capsys, "--path", "/v1/chat/completions", "--request", str(req), "--estimate",
                    "--response", str(FIXTURES / "openai/chat/stream_no_usage.sse"), "--content-type", "text/event-stream")  # fmt: skip
    assert code == 0
    assert out["request_rewritten"] is True and out["facts"]["usage_injected"] is True
    assert out["usage"]["source"] == "none" and out["usage"]["note"] == "no-usage"
    assert out["estimate"]["source"] == "estimated" and out["estimate"]["input_tokens"] == out["facts"]["estimated_prompt_tokens"]


def test_parse_bedrock_headers_and_encoding(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--path", "/v1/chat/completions", "--response", str(FIXTURES / "openai/chat/gzip.bin"), "--content-encoding", "gzip")
    assert code == 0 and out["usage"]["input_tokens"] == 120
    code, out = run(capsys, "--path", "/model/amazon.titan-text-express-v1/invoke", "--response", str(FIXTURES / "bedrock/invoke/headers_titan.json"),
                    "--header", "X-Amzn-Bedrock-Input-Token-Count: 5", "--header", "X-Amzn-Bedrock-Output-Token-Count: 12")  # fmt: skip
    assert code == 0 and (out["usage"]["input_tokens"], out["usage"]["output_tokens"]) == (5, 12)


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "--path", "/x", "--header", "nocolon"]) == 2
    assert main(["parse", "--path", "/x", "--response", str(tmp_path / "missing")]) == 1
    capsys.readouterr()
