"""Talking to a running aggregator from the CLI: find it, and send it the admin writes.

An embedded store can be open in one process only, so while an aggregator
runs, commands go through its HTTP API: reads via ``POST /v1/sql`` (see
query_source.py), writes via ``POST /v1/prices`` and ``POST /v1/reprice``
with the admin token. With no aggregator running they open the store directly.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from .query_source import SQL_TOKEN_ENV, open_runner, period_from

if TYPE_CHECKING:
    from ..analytics.reports import Runner
    from ..store.clickhouse import Store

ADMIN_TOKEN_ENV = "CHARGEBACK_ADMIN_TOKEN"
AGGREGATOR_URL_ENV = "CHARGEBACK_AGGREGATOR_URL"
PROBE_TIMEOUT_S = 0.5
ADMIN_TIMEOUT_S = 3600.0  # a reprice of a long range takes a while; the server answers when done


class AggregatorError(Exception):
    pass


class RequestTooLarge(AggregatorError):
    """The request is over what the aggregator's HTTP API reads (it would be refused, or cut mid-send)."""


def add_write_target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where to write")
    group.add_argument("--store-dsn", help="chdb:///path or http://host:8123 (default: CHARGEBACK_STORE_DSN or ./var/chargeback)")
    group.add_argument("--database", help="ClickHouse database (default: chargeback)")
    group.add_argument("--aggregator", metavar="URL", help=f"send it to a running aggregator instead (default: ${AGGREGATOR_URL_ENV}, or one found at CHARGEBACK_HTTP_LISTEN)")
    group.add_argument("--admin-token", help=f"bearer token for the aggregator's admin endpoints (default: ${ADMIN_TOKEN_ENV})")


def running_aggregator(explicit: str | None = None) -> str | None:
    """The base URL of an aggregator to use: the one named, else one answering where settings say it listens."""
    if explicit:
        return explicit.rstrip("/")
    from_env = os.environ.get(AGGREGATOR_URL_ENV)
    if from_env:
        return from_env.rstrip("/")
    from ..settings import AggregatorSettings

    host, _, port = AggregatorSettings().http_listen.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]", "") else host
    url = f"http://{host}:{port}"
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=PROBE_TIMEOUT_S) as response:
            return url if response.status == 200 else None
    except OSError:
        return None


def sql_token(args: argparse.Namespace) -> str:
    """--sql-token, else CHARGEBACK_SQL_TOKEN, else the file CHARGEBACK_SQL_TOKEN_FILE names."""
    return getattr(args, "sql_token", None) or _secret("sql_token")


def admin_token(args: argparse.Namespace) -> str:
    return getattr(args, "admin_token", None) or _secret("admin_token")


def _secret(field: str) -> str:
    from ..secret_env import SecretFileError, read_secret

    try:
        return read_secret(field)
    except SecretFileError as exc:
        raise AggregatorError(str(exc)) from exc


def use_local_access(args: argparse.Namespace) -> None:
    """No token given: take the one `chargeback serve` keeps beside the store this command reads, if that
    aggregator answers (local_access.py). An explicit --aggregator keeps it only when it names that same URL."""
    from .. import local_access
    from ..settings import DEFAULT_STORE_DSN

    store_dsn = getattr(args, "store_dsn", None) or _secret("store_dsn") or DEFAULT_STORE_DSN
    access = local_access.find(store_dsn)
    if access is None:
        return
    if args.aggregator and args.aggregator.rstrip("/") != access.url.rstrip("/"):
        return
    if args.aggregator or _answers(access.url):
        args.aggregator, args.sql_token = access.url, access.token


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def post(base_url: str, path: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST JSON with a bearer token; the decoded answer, or AggregatorError with the server's reason."""
    from ..server.http_api import MAX_REQUEST_BYTES
    from ..store.wire import decode, encode

    data = json.dumps(encode(payload)).encode()
    if len(data) > MAX_REQUEST_BYTES:
        # Said here: the server refuses it with 413 but may close the connection while we are
        # still sending, which would read as "cannot reach the aggregator".
        raise RequestTooLarge(f"{path}: the request is {len(data):,} bytes; the aggregator's HTTP API reads at most "
                              f"{MAX_REQUEST_BYTES:,}")  # fmt: skip
    request = urllib.request.Request(
        base_url + path,
        data=data,
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT_S) as response:
            return dict(decode(json.loads(response.read())))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            body = json.loads(body).get("error", body)
        except ValueError:
            pass
        raise AggregatorError(f"{path} answered {exc.code}: {body}") from exc
    except OSError as exc:
        raise AggregatorError(f"cannot reach the aggregator at {base_url}: {exc}") from exc


@contextmanager
def open_reader(args: argparse.Namespace) -> Iterator[Runner]:
    """A read-only runner: the aggregator named or found running (when a SQL token is at hand), else the store."""
    from ..store.clickhouse import StoreError

    if not sql_token(args):
        use_local_access(args)
    elif not args.aggregator:
        args.aggregator = running_aggregator()
    try:
        with open_runner(args) as runner:
            yield runner
    except StoreError as exc:
        if "chdb" in str(exc) and not args.aggregator:
            raise AggregatorError(
                f"{exc}\nThe embedded store may be open in a running aggregator: `chargeback serve` keeps its SQL token beside "
                f"the store (<store>.sql-access.json), or use --aggregator URL with --sql-token (or ${SQL_TOKEN_ENV}, ${SQL_TOKEN_ENV}_FILE)."
            ) from exc
        raise


def whole_days(args: argparse.Namespace) -> tuple[date, date]:
    """(first, last) UTC days, both inclusive, from --month / --from --to (both inclusive) / --days."""
    period = period_from(args, default_days=None)
    if period is None:
        raise AggregatorError("name a period: --month YYYY-MM, --from YYYY-MM-DD --to YYYY-MM-DD (both inclusive), or --days N")
    return period.start.date(), (period.end - timedelta(days=1)).date()


def load_into(args: argparse.Namespace, endpoint: str, payload: dict[str, Any],
              save: Callable[[Store], dict[str, Any]]) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """Definitions already validated go to the running aggregator's admin ``endpoint`` (which
    applies them at once), or, with none running, straight into the store. Returns the counts
    and the aggregator's URL (None: written to the store)."""
    from ..settings import AggregatorSettings
    from ..store.clickhouse import Store  # noqa: F811 (at run time; the annotation's import is for type checkers)

    url = running_aggregator(args.aggregator)
    if url:
        token = admin_token(args)
        if not token:
            raise AggregatorError(f"an aggregator runs at {url}: pass --admin-token (or set CHARGEBACK_ADMIN_TOKEN)")
        return post(url, endpoint, token, {**payload, "replace": args.replace, "source": str(args.file)}), url
    settings = AggregatorSettings(**{k: v for k, v in (("store_dsn", args.store_dsn), ("database", args.database)) if v})  # type: ignore[arg-type]
    store = Store.from_settings(settings)
    try:
        store.migrate()
        return save(store), None
    finally:
        store.close()
