"""`chargeback serve`: run the aggregator until SIGTERM/SIGINT, then drain and flush."""

from __future__ import annotations

import argparse
import signal
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
    from ...settings import AggregatorSettings

    logs.configure(args.log_level)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (("store_dsn", args.store_dsn), ("grpc_listen", args.grpc_listen), ("http_listen", args.http_listen))
        if value
    }
    aggregator = Aggregator(AggregatorSettings(**overrides))
    aggregator.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: aggregator.request_stop())
    aggregator.wait()
    aggregator.stop()
    return 0
