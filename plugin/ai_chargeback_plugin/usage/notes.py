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
# Estimates from sizes, when a body was never read (each says whose count it is):
OUTPUT_FROM_BYTES = "output-from-bytes"  # output tokens from the response byte count Kong reports
PROMPT_FROM_CONTENT_LENGTH = "prompt-from-content-length"  # request body not read: its Content-Length
PROMPT_FROM_REQUEST_SIZE = "prompt-from-request-size"  # no Content-Length: Kong's request size less headers
ANSWER_COMPRESSED = "answer-compressed"  # its byte count measures gzip/br output: no size estimate
ERROR_BOUND = "err<={}%"  # the largest error of the size estimates above on the calibration corpus
# Why a body was not read or not seen:
BODY_SPOOLED = "body-spooled"  # nginx spooled the request body to disk and this Kong cannot read it back
BODY_NOT_JSON = "body-not-json"  # Kong read the request body and could not decode it as JSON
BODY_NOT_BUFFERED = "body-not-buffered"  # buffering was asked for, Kong did not keep the answer
KONG_ERROR_PAGE = "kong-error-page"  # Kong answered with its own error page after trying the upstream
UPSTREAM_FAILED = "upstream-failed"  # ... because the upstream failed: unreachable, timed out, truncated
KONG_AI_PROXY_ZERO_OUTPUT = "kong-ai-proxy-zero-output"  # ai-proxy said 0 output for a 2xx answer with a body
AI_PROXY_ANALYTICS_MISSING = "ai-proxy-analytics-missing"
NOT_PROXIED = "not-proxied"

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
