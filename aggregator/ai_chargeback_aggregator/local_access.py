"""The SQL token of a local aggregator, beside its embedded store, so the CLI on the same machine finds it.

``chargeback serve`` on an embedded store with no ``CHARGEBACK_SQL_TOKEN``
generates a token on its first run and keeps it in ``<store>.sql-access.json``
(for ``./var/chargeback``: ``./var/chargeback.sql-access.json``), mode 0600,
with the URL it answers on. The ``chargeback`` CLI, reading the same store,
finds that file while the aggregator holds the store and goes through the
aggregator's ``POST /v1/sql`` with no option to give.

The file sits outside the store's data directory, and analyst SQL cannot read
files; it is as private as the store itself (its owner only).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".sql-access.json"
MODE = 0o600


class LocalAccessError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LocalAccess:
    url: str
    token: str
    path: Path


def path_for(store_dsn: str) -> Path | None:
    """Where the access file of an embedded store lives; None for a server store."""
    from .store.clickhouse import is_embedded, normalize_dsn

    dsn = normalize_dsn(store_dsn)
    if not is_embedded(dsn) or dsn == "chdb://":
        return None
    store = Path(dsn[len("chdb://") :])
    return store.with_name(store.name + SUFFIX)


def prepare(store_dsn: str, url: str) -> LocalAccess:
    """The store's local token (generated on first use), written with `url`; LocalAccessError when unsafe."""
    path = path_for(store_dsn)
    if path is None:
        raise LocalAccessError("a local SQL token needs an embedded store (chdb://...)")
    token = ""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise LocalAccessError(f"{path} can be read by other users (mode {mode:04o}): its token reads every chargeback number. "
                                   f"Run `chmod 600 {path}`, or delete it for a new token.")  # fmt: skip
        token = read(path).token if path.stat().st_size else ""
    access = LocalAccess(url, token or secrets.token_urlsafe(32), path)
    _write(access)
    return access


def read(path: Path) -> LocalAccess:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        url, token = str(data["url"]), str(data["token"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalAccessError(f"cannot read {path}: {exc}") from exc
    if not token:
        raise LocalAccessError(f"{path} holds no token")
    return LocalAccess(url, token, path)


def find(store_dsn: str) -> LocalAccess | None:
    """The access file of `store_dsn`, when there is a readable one."""
    path = path_for(store_dsn)
    if path is None or not path.is_file():
        return None
    try:
        return read(path)
    except LocalAccessError:
        return None


def _write(access: LocalAccess) -> None:
    """Atomically, and never readable by others, not even for a moment."""
    access.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = access.path.with_name(f".{access.path.name}.{os.getpid()}")
    try:
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MODE), "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), MODE)  # an old leftover keeps its mode: O_CREAT's applies to new files only
            json.dump({"url": access.url, "token": access.token}, out)
            out.write("\n")
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, access.path)
