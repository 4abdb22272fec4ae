"""Console accounts: who may sign in, with which role and grants. One YAML file, secrets hashed.

The file (settings.console_users_path, default ``./var/console-users.yaml``) is
written by ``chargeback console users|tokens|groups ...`` and read by the
aggregator whenever it changes, so accounts work while an aggregator holds the
embedded store, and a deployment can mount the same file into every aggregator
(as Prometheus does with its web config)::

    users:
      alice: {role: finance, password: "$argon2id$..."}
      bob: {role: viewer, teams: [payments], password: "$argon2id$..."}
      carol@example.com: {role: viewer, tenants: [acme], sso: true}   # OpenID Connect only
    tokens:                                                            # for scripts: Authorization: Bearer cbt_...
      nightly-export: {role: viewer, teams: [payments], sha256: "..."}
    groups:                                                            # OpenID Connect group claim -> grants
      finance-team: {role: finance}

Passwords are argon2id hashes (argon2-cffi); tokens are 256 random bits, kept
as their SHA-256 (a hash that cannot be reversed needs no work factor when
what it hides cannot be guessed). Roles: ``admin`` (everything, plus the
access page), ``finance`` (every team and tenant), ``viewer`` (only the teams
and tenants granted).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("admin", "finance", "viewer")
TOKEN_PREFIX = "cbt_"
MIN_PASSWORD_CHARS = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_HASHER = PasswordHasher()  # argon2id, the library's current defaults
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A bad account, grant or file; the message says which and why."""


@dataclass(frozen=True)
class Grants:
    role: str
    teams: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if self.role == "viewer" and not (self.teams or self.tenants):
            raise AccountError("a viewer needs at least one --team or --tenant")
        for value in (*self.teams, *self.tenants):
            if not value or len(value) > 200 or any(ord(c) < 32 for c in value):
                raise AccountError(f"bad team or tenant name {value!r}")

    def union(self, other: Grants) -> Grants:
        """The wider of two roles, and every team and tenant of both."""
        role = min((self.role, other.role), key=ROLES.index)
        return Grants(role, self.teams | other.teams, self.tenants | other.tenants)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"role": self.role}
        if self.teams:
            record["teams"] = sorted(self.teams)
        if self.tenants:
            record["tenants"] = sorted(self.tenants)
        return record

    @classmethod
    def from_record(cls, where: str, record: Mapping[str, Any]) -> Grants:
        try:
            return cls(str(record.get("role", "")), frozenset(map(str, record.get("teams") or ())),
                       frozenset(map(str, record.get("tenants") or ())))  # fmt: skip
        except AccountError as exc:
            raise AccountError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class User:
    name: str
    grants: Grants
    password_hash: str = ""  # empty: cannot sign in with a password
    sso: bool = False  # may sign in through OpenID Connect (name = the verified email)
    # Sessions issued before this (UNIX seconds) are void: `users revoke-sessions` and password changes bump it.
    sessions_after: int = 0

    def stamp(self) -> str:
        """Changes whenever this user's sessions must end (password or revocation)."""
        return hashlib.sha256(f"{self.password_hash}|{self.sessions_after}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Token:
    name: str
    grants: Grants
    sha256: str


@dataclass
class Accounts:
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    groups: dict[str, Grants] = field(default_factory=dict)

    def verify_password(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        try:
            _HASHER.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user if user and user.password_hash else None

    def token(self, presented: str) -> Token | None:
        if not presented.startswith(TOKEN_PREFIX):
            return None
        digest = token_digest(presented)
        found = None
        for token in self.tokens.values():  # compare every one: no early exit to time
            if hmac.compare_digest(token.sha256, digest):
                found = token
        return found

    def sso_grants(self, email: str, groups: list[str]) -> Grants | None:
        """An OpenID Connect user's grants: their own entry and every mapped group, or None when nothing grants them."""
        grants = None
        user = self.users.get(email)
        if user is not None and user.sso:
            grants = user.grants
        for group in groups:
            mapped = self.groups.get(group)
            if mapped is not None:
                grants = mapped if grants is None else grants.union(mapped)
        return grants

    # -- the file ---------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        users = {}
        for user in self.users.values():
            record = user.grants.to_record()
            if user.password_hash:
                record["password"] = user.password_hash
            if user.sso:
                record["sso"] = True
            if user.sessions_after:
                record["sessions_after"] = user.sessions_after
            users[user.name] = record
        tokens = {t.name: {**t.grants.to_record(), "sha256": t.sha256} for t in self.tokens.values()}
        groups = {name: g.to_record() for name, g in self.groups.items()}
        return {"users": users, "tokens": tokens, "groups": groups}

    @classmethod
    def from_document(cls, data: Any, *, source: str) -> Accounts:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise AccountError(f"{source}: expected a mapping with users, tokens, groups")
        unknown = set(data) - {"users", "tokens", "groups"}
        if unknown:
            raise AccountError(f"{source}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        accounts = cls()
        for name, record in _section(data, "users", source).items():
            where = f"{source}: users.{name}"
            accounts.users[name] = User(
                name, Grants.from_record(where, record), str(record.get("password") or ""), bool(record.get("sso")),
                int(record.get("sessions_after") or 0),
            )  # fmt: skip
        for name, record in _section(data, "tokens", source).items():
            digest = str(record.get("sha256") or "")
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise AccountError(f"{source}: tokens.{name}: sha256 must be 64 hex digits")
            accounts.tokens[name] = Token(name, Grants.from_record(f"{source}: tokens.{name}", record), digest)
        for name, record in _section(data, "groups", source).items():
            accounts.groups[name] = Grants.from_record(f"{source}: groups.{name}", record)
        return accounts


def _section(data: Mapping[str, Any], key: str, source: str) -> dict[str, Mapping[str, Any]]:
    section = data.get(key) or {}
    if not isinstance(section, Mapping) or not all(isinstance(v, Mapping) for v in section.values()):
        raise AccountError(f"{source}: {key} must map names to records")
    return {check_name(str(k)): v for k, v in section.items()}


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise AccountError(f"bad name {name!r}: letters, digits and . _ @ + - (up to 128), starting with a letter or digit")
    return name


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return _HASHER.hash(password)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountsFile:
    """The accounts file: read when it changed, written whole and atomically under a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._accounts = Accounts()

    def current(self) -> Accounts:
        """The accounts as the file says now (re-read only when its size, mtime or inode changed)."""
        try:
            st = self.path.stat()
            seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen != self._seen:
                self._accounts = self._read() if seen else Accounts()
                self._seen = seen
            return self._accounts

    def _read(self) -> Accounts:
        try:
            return Accounts.from_document(yaml.safe_load(self.path.read_text(encoding="utf-8")), source=str(self.path))
        except (OSError, yaml.YAMLError) as exc:
            raise AccountError(f"cannot read {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def editing(self) -> Iterator[Accounts]:
        """Read, let the caller change, write back atomically (0600); one writer at a time across processes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            accounts = self._read() if self.path.exists() else Accounts()
            yield accounts
            text = "# console accounts: written by `chargeback console ...`; secrets are hashes\n" + yaml.safe_dump(
                accounts.to_document(), sort_keys=True, allow_unicode=True
            )
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
