"""`chargeback serve`: run the aggregator until SIGTERM/SIGINT, then drain and flush."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from .. import logs


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("serve", help="run the aggregator (gRPC ingest + HTTP health/metrics)")
    parser.add_argument("--store-dsn", help="chdb:///path (embedded, default ./var/chargeback) or http://host:8123")
    parser.add_argument("--grpc-listen", help="host:port for gRPC ingest (default 127.0.0.1:50051)")
    parser.add_argument("--http-listen", help="host:port for /healthz, /readyz, /metrics (default 127.0.0.1:8080)")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...server.app import Aggregator
    from ...server.http_api import ListenError
    from ...settings import AggregatorSettings

    logs.configure(args.log_level)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (("store_dsn", args.store_dsn), ("grpc_listen", args.grpc_listen), ("http_listen", args.http_listen))
        if value
    }
    aggregator = Aggregator(AggregatorSettings(**overrides))
    try:
        aggregator.start()
    except ListenError as exc:
        # One line a person can act on, no traceback: the other process holds the port.
        print(f"chargeback serve: {exc}", file=sys.stderr)
        aggregator.stop(grace_s=1)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: aggregator.request_stop())
    aggregator.wait()
    aggregator.stop()
    return 0
