"""One streaming request per usage-capture mode, end to end through the real plugin server.

(a) ai-proxy analytics in serialize(): exact, no buffering;
(b) buffered: include_usage injected, the whole stream parsed: exact, but no streaming to the client;
(c) estimate: labelled ``estimated``, never passed off as exact; the output is estimated from Kong's byte count.
"""

from __future__ import annotations

from pathlib import Path

import openai
from kong_harness.ai_proxy import ai_proxy_hook
from support.gateway import Gateway, running_gateway
from support.mock_llm import expected_usage

MESSAGES = [{"role": "user", "content": "Stream me a haiku about reconciling invoices at month end."}]


def stream_chat(gw: Gateway, *, include_usage: bool = False) -> list[object]:
    client = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key="unused", default_headers={"apikey": "demo-key-checkout"},
                           max_retries=0)  # fmt: skip
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    return list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra))  # type: ignore[arg-type]


def stored(gw: Gateway) -> tuple[object, ...]:
    gw.wait_for_events(1)
    return gw.query(
        "SELECT usage_source, streaming, input_tokens, output_tokens, usage_reported_mask, served_model, usage_note "
        "FROM chargeback.usage_events FINAL"
    )[0]


def test_a_ai_proxy_analytics_give_exact_counts_for_an_unbuffered_stream(tmp_path: Path) -> None:
    with running_gateway(tmp_path, serialize_hook=ai_proxy_hook()) as gw:
        chunks = stream_chat(gw, include_usage=True)
        assert len(chunks) > 2
        expected = expected_usage({"model": "gpt-4o-mini", "messages": MESSAGES})
        source, streaming, input_tokens, output_tokens, mask, model, _ = stored(gw)
        assert (source, streaming) == ("kong-ai-proxy", True)
        assert (input_tokens, output_tokens) == (expected["prompt_tokens"], expected["completion_tokens"])
        assert model == expected["model"]
        assert gw.front.last_request().buffered_proxying is False  # the client really got a stream


def test_b_buffered_mode_injects_include_usage_and_counts_exactly(tmp_path: Path) -> None:
    with running_gateway(tmp_path, plugin_overrides={"usage_capture": "buffered"}) as gw:
        chunks = stream_chat(gw)  # the client did not ask for usage
        assert any(getattr(c, "choices", None) for c in chunks)
        upstream_body = gw.llm.last_request().json
        assert upstream_body["stream_options"] == {"include_usage": True}  # injected for metering
        expected = expected_usage({"model": "gpt-4o-mini", "messages": MESSAGES})
        source, streaming, input_tokens, output_tokens, mask, model, _ = stored(gw)
        assert (source, streaming, input_tokens, output_tokens) == (
            "provider", True, expected["prompt_tokens"], expected["completion_tokens"])  # fmt: skip
        assert gw.front.last_request().buffered_proxying is True


def test_c_estimate_mode_is_labelled_estimated_and_estimates_the_unseen_output_from_kongs_byte_count(tmp_path: Path) -> None:
    with running_gateway(tmp_path, plugin_overrides={"usage_capture": "estimate"}) as gw:
        stream_chat(gw)
        assert "stream_options" not in gw.llm.last_request().json  # nothing injected, nothing buffered
        source, streaming, input_tokens, output_tokens, mask, _, note = stored(gw)
        assert (source, streaming) == ("estimated", True)
        expected = expected_usage({"model": "gpt-4o-mini", "messages": MESSAGES})
        assert 0 < input_tokens <= 2 * expected["prompt_tokens"]  # an estimate, in the right range
        # never a silent $0: the output nobody saw is estimated from the bytes Kong sent, and says so
        assert mask & 8 and output_tokens > 0
        parts = note.split(",")
        assert "output-from-bytes" in parts and any(p.startswith("err<=") for p in parts)
        bound = int(next(p for p in parts if p.startswith("err<="))[5:-1]) / 100
        # the mock's chunks are not the providers' byte for byte: allow the bound plus the mock's own envelope difference
        assert abs(output_tokens - expected["completion_tokens"]) <= max(3, expected["completion_tokens"] * (bound + 0.3))
        assert gw.front.last_request().buffered_proxying is False


def test_default_auto_mode_does_not_buffer_streams_and_buffers_plain_answers(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gw:
        stream_chat(gw)
        gw.wait_for_events(1)
        assert gw.front.last_request().buffered_proxying is False
        client = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key="unused",
                               default_headers={"apikey": "demo-key-checkout"}, max_retries=0)  # fmt: skip
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        gw.wait_for_events(2)
        assert gw.front.last_request().buffered_proxying is True
        sources = gw.query("SELECT usage_source, streaming FROM chargeback.usage_events FINAL ORDER BY started_at")
        assert sources == [("estimated", True), ("provider", False)]
