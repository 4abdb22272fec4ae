"""The words a :class:`UsageRecord` puts in its ``note``, written once.

A note says why a count is missing, estimated or partial. Several notes are
joined with ``","`` (see :func:`join`), so a consumer tests membership with
``"stream-truncated" in record.note.split(",")``.

Billable extras (``UsageRecord.billable_extras``) use the key names below. Keys
ending in ``_requests`` / ``_calls`` / ``_tokens`` that are *not* marked subset
are units billed on top of the input/output tokens; the ones marked subset only
break down a count the record already holds, so they are never added again.
"""

from __future__ import annotations

# --- notes ---------------------------------------------------------------
BODY_TOO_LARGE = "body-too-large"  # over max_body_bytes, raw or once decoded
DECODE_ERROR = "decode-error"  # gzip/deflate/br/zstd stream was corrupt
UNSUPPORTED_ENCODING = "unsupported-encoding"  # a Content-Encoding we cannot undo
EMPTY_BODY = "empty-body"
MALFORMED = "malformed-json"  # the body (or every usage-bearing event) failed to parse
NO_USAGE = "no-usage"  # parsed fine, the provider reported no usage block
STREAM_TRUNCATED = "stream-truncated"  # the stream ended before its terminal event
UNKNOWN_API = "unknown-api"  # neither configuration, path nor body told the API family
UPSTREAM_ERROR = "upstream-error"  # HTTP status >= 400 and no usage in the body
INCONSISTENT = "inconsistent-counts"  # a subset exceeded its total and was clamped
INVALID_COUNT = "invalid-count"  # a count was negative, fractional or not a number
EVENTSTREAM_CRC = "eventstream-crc-mismatch"  # AWS event-stream frame failed its CRC
PROMPT_COUNT_MISSING = "prompt-count-missing"  # e.g. Ollama omits prompt_eval_count on a cache hit
KONG_EXCLUDES_CACHE = "kong-excludes-cache"  # Kong's Anthropic/Bedrock counts leave out cache tokens
ESTIMATED = "estimated"
COMPLETION_NOT_VISIBLE = "completion-not-visible"

# --- billable extras keys -------------------------------------------------
WEB_SEARCH_REQUESTS = "web_search_requests"  # Anthropic server_tool_use / OpenAI web_search calls
WEB_FETCH_REQUESTS = "web_fetch_requests"  # Anthropic server_tool_use.web_fetch_requests
FILE_SEARCH_CALLS = "file_search_calls"  # OpenAI Responses file_search_call items
CODE_INTERPRETER_CALLS = "code_interpreter_calls"  # OpenAI Responses code_interpreter_call items
IMAGE_GEN_INPUT_TOKENS = "image_gen_input_tokens"  # OpenAI Responses tool_usage.image_gen (billed apart)
IMAGE_GEN_OUTPUT_TOKENS = "image_gen_output_tokens"
CACHE_WRITE_1H_TOKENS = "cache_write_1h_tokens"  # SUBSET of cache_write_input_tokens written with a 1-hour TTL


def join(*notes: str) -> str:
    """Join non-empty notes with commas, dropping duplicates, keeping order."""
    seen: list[str] = []
    for note in notes:
        if not note:
            continue
        for part in note.split(","):
            if part and part not in seen:
                seen.append(part)
    return ",".join(seen)
