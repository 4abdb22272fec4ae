"""`ai-chargeback-usage parse`: run a recorded request/response through the plugin's own usage parsing.

Uses exactly the functions the Kong plugin calls (``prepare_request``,
``parse_usage``, ``estimate_usage``), so what it prints is what would be
metered. It ships with the plugin, so it runs on the gateway host where the
traffic was captured. Prints one JSON object: the request facts (with whether
``stream_options.include_usage`` would be injected) and the normalized usage.

    ai-chargeback-usage parse --path /v1/messages --request req.json --response resp.sse \\
        --content-type text/event-stream
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ai-chargeback-usage", description="Inspect how LLM usage is parsed from provider traffic.")
    commands = top.add_subparsers(dest="usage_command", metavar="SUBCOMMAND", required=True)
    parser = commands.add_parser(
        "parse",
        help="parse a recorded request/response and print the normalized usage as JSON",
        description="Parse a recorded exchange with the plugin's own code and print the request facts and usage.",
    )
    parser.add_argument("--path", required=True, help="upstream path, may include ?query (e.g. /v1/chat/completions)")
    parser.add_argument("--host", default="", help="upstream host (helps detect the provider)")
    parser.add_argument("--request", metavar="FILE", help="request body file ('-' for stdin)")
    parser.add_argument("--response", metavar="FILE", help="response body file as received, possibly compressed ('-' for stdin)")
    parser.add_argument("--content-type", default=None, help="response Content-Type (default: from --header, else none)")
    parser.add_argument("--content-encoding", default=None, help="response Content-Encoding: gzip, deflate, br, zstd")
    parser.add_argument("--header", action="append", default=[], metavar="K:V", help="response header (repeatable)")
    parser.add_argument("--status", type=int, default=200, help="response HTTP status (default 200)")
    parser.add_argument("--provider", default="auto", help="pin the provider (default: detect)")
    parser.add_argument("--api-family", default="auto", help="pin the API family (default: detect)")
    parser.add_argument("--deployment", action="append", default=[], metavar="NAME=MODEL", help="Azure deployment to model (repeatable)")
    parser.add_argument("--estimate", action="store_true", help="also print the offline estimate")
    parser.add_argument("--max-body-bytes", type=int, default=10_485_760)
    parser.set_defaults(handler=run)
    return top


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


def _read(name: str | None) -> bytes | None:
    if name is None:
        return None
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def _record_dict(record: Any) -> dict[str, Any]:
    out = dataclasses.asdict(record) if not hasattr(record, "__slots__") else {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    out["source"] = record.source.value
    out["billable_extras"] = dict(record.billable_extras)
    out["total_tokens"] = record.total_tokens
    return out


def run(args: argparse.Namespace) -> int:
    from . import Exchange, estimate_usage, parse_usage, prepare_request

    try:
        request = _read(args.request)
        response = _read(args.response)
    except OSError as exc:
        print(f"ai-chargeback-usage parse: {exc}", file=sys.stderr)
        return 1
    headers: dict[str, str] = {}
    for item in args.header:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            print(f"ai-chargeback-usage parse: --header wants K:V, got {item!r}", file=sys.stderr)
            return 2
        headers[key.strip().lower()] = value.strip()
    deployments: dict[str, str] = {}
    for item in args.deployment:
        name, sep, model = item.partition("=")
        if not sep:
            print(f"ai-chargeback-usage parse: --deployment wants NAME=MODEL, got {item!r}", file=sys.stderr)
            return 2
        deployments[name] = model

    facts, rewritten = prepare_request(
        args.path,
        request,
        host=args.host,
        provider=args.provider,
        api_family=args.api_family,
        estimate_prompt=args.estimate,
        max_body_bytes=args.max_body_bytes,
    )
    out: dict[str, Any] = {
        "facts": {f.name: getattr(facts, f.name) for f in dataclasses.fields(facts)},
        "request_rewritten": rewritten is not None,
    }
    if response is not None:
        exchange = Exchange(
            path=args.path,
            response_body=response,
            content_type=args.content_type if args.content_type is not None else headers.get("content-type", ""),
            content_encoding=args.content_encoding if args.content_encoding is not None else headers.get("content-encoding", ""),
            response_headers=headers,
            status=args.status,
            host=args.host,
            provider=args.provider,
            api_family=args.api_family,
            requested_model=facts.requested_model,
            facts=facts if request is not None else None,
        )
        out["usage"] = _record_dict(parse_usage(exchange, max_body_bytes=args.max_body_bytes, deployment_models=deployments or None))
        if args.estimate:
            out["estimate"] = _record_dict(estimate_usage(facts, exchange))
    json.dump(out, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0
