"""`chargeback serve`: run the aggregator until SIGTERM/SIGINT, then drain and flush."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
from typing import Any

from .. import logs
from ..query_source import EXIT_ERROR


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("serve", help="run the aggregator (gRPC ingest + HTTP: the console, health, metrics, API)")
    parser.add_argument("--store-dsn", help="chdb:///path (embedded, default ./var/chargeback) or http://host:8123 "
                                            "(env CHARGEBACK_STORE_DSN)")  # fmt: skip
    parser.add_argument("--grpc-listen", help="host:port for gRPC ingest (default 127.0.0.1:50051, env CHARGEBACK_GRPC_LISTEN)")
    parser.add_argument("--http-listen", help="host:port for health, metrics and the API (default 127.0.0.1:8080, "
                                              "env CHARGEBACK_HTTP_LISTEN)")  # fmt: skip
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ... import local_access
    from ...secret_env import SecretFileError, scrub_environment
    from ...server.app import Aggregator
    from ...server.collector import tune_for_ingest
    from ...server.http_api import ListenError
    from ...settings import AggregatorSettings

    logs.configure(args.log_level)
    overrides: dict[str, Any] = {
        key: value
        for key, value in (("store_dsn", args.store_dsn), ("grpc_listen", args.grpc_listen), ("http_listen", args.http_listen))
        if value
    }
    try:
        settings = AggregatorSettings(**overrides)
    except (ValidationError, SecretFileError) as exc:
        print(f"chargeback serve: invalid settings: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for address, option, variable in ((settings.grpc_listen, "--grpc-listen", "CHARGEBACK_GRPC_LISTEN"),
                                      (settings.http_listen, "--http-listen", "CHARGEBACK_HTTP_LISTEN")):  # fmt: skip
        problem = listen_problem(address)
        if problem:
            print(f"chargeback serve: cannot listen on {address}: {problem}; choose another address with "
                  f"{option} HOST:PORT or {variable}", file=sys.stderr)  # fmt: skip
            return EXIT_ERROR
    access = None
    if settings.sql_token is None and local_access.path_for(settings.store_dsn) is not None:
        # `make run`: a token of its own for POST /v1/sql, kept beside the store for the CLI.
        try:
            access = local_access.prepare(settings.store_dsn, base_url(settings))
            settings = AggregatorSettings(**overrides, sql_token=access.token)
        except (local_access.LocalAccessError, ValidationError, OSError) as exc:
            print(f"chargeback serve: {exc}", file=sys.stderr)
            return EXIT_ERROR
    scrub_environment()  # read once: no secret stays where the process environment can be read
    aggregator = Aggregator(settings)
    try:
        aggregator.start()
    except ListenError as exc:  # taken between the check above and the bind: still one line, no traceback
        print(f"chargeback serve: {exc}", file=sys.stderr)  # start() stopped what it had started
        return EXIT_ERROR
    tune_for_ingest()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: aggregator.request_stop())
    print(banner(settings, access), file=sys.stderr, flush=True)
    aggregator.wait()
    aggregator.stop()
    return 0


def listen_problem(address: str) -> str | None:
    """Why a server could not bind `address` now (the port is taken, say), or None.

    Checked before starting so a busy port is one clear line, not a traceback from
    deep inside gRPC or the HTTP server; the servers still report any later failure.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"unknown host ({exc.strerror})"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers do: TIME_WAIT is not "busy"
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is already in use (another aggregator, or `make run` in another terminal?)"
            return exc.strerror or str(exc)
    return None


def base_url(settings: Any) -> str:
    host, _, port = settings.http_listen.rpartition(":")
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{port}"


def banner(settings: Any, access: Any = None) -> str:
    url = base_url(settings)
    found = (f"the CLI finds this aggregator and its SQL token in {access.path} (mode 0600)" if access is not None else
             f"the CLI finds this aggregator at {url} (or set CHARGEBACK_AGGREGATOR_URL / --aggregator URL)")  # fmt: skip
    return (f"aggregator ready: gRPC ingest on {settings.grpc_listen}, HTTP on {url}\n"
            f"  in another terminal:  make demo   (sends traffic through kong.yml's routes to it)\n"
            f"                        .venv/bin/chargeback report --by team --month $(date -u +%Y-%m)\n"
            f"  {found}\n"
            f"  the console:          {url}/  (an account: .venv/bin/chargeback console users add NAME --role finance)")  # fmt: skip
