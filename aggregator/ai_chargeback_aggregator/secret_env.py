"""Secrets in the environment: read from files (``*_FILE``), then gone from the process's environment.

Each secret setting can be given as ``CHARGEBACK_X`` or, the Docker/Kubernetes
secrets convention, as ``CHARGEBACK_X_FILE`` naming a file that holds it (one
trailing newline is dropped). Giving both is an error.

Once the aggregator has read its settings, ``scrub_environment`` removes the
secret variables from ``os.environ`` *and* overwrites them in the environment
block the kernel shows as ``/proc/<pid>/environ``: that block is the process's
original copy, which ``unsetenv`` alone leaves intact.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

log = logging.getLogger(__name__)

PREFIX = "CHARGEBACK_"
SECRET_FIELDS = ("auth_token", "sql_token", "admin_token", "store_dsn", "sql_store_dsn", "console_session_secret",
                 "console_oidc_client_secret")  # fmt: skip
# The bearer tokens of the three roles: gateways (ingest), analysts (SQL), operators (admin).
ROLE_TOKENS = ("auth_token", "sql_token", "admin_token")
MAX_SECRET_FILE_BYTES = 64 * 1024


class SecretFileError(ValueError):
    pass


def variable(field: str) -> str:
    return f"{PREFIX}{field.upper()}"


def read_secret_file(path: str, what: str) -> str:
    """The secret held in `path`; SecretFileError naming `what` (the variable) when it cannot be read or is empty."""
    try:
        file = Path(path)
        if file.stat().st_size > MAX_SECRET_FILE_BYTES:
            raise SecretFileError(f"{what}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes; is it the right file?")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"{what}: cannot read {path}: {exc}") from exc
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise SecretFileError(f"{what}: {path} is empty")
    return value


def read_secret(field: str, environ: dict[str, str] | None = None) -> str:
    """A secret for the CLI: ``CHARGEBACK_X``, else the file ``CHARGEBACK_X_FILE`` names, else ''."""
    env = os.environ if environ is None else environ
    name = variable(field)
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    return read_secret_file(path, f"{name}_FILE") if path else ""


class SecretFilesSource(PydanticBaseSettingsSource):
    """pydantic-settings source: ``CHARGEBACK_X_FILE`` for each secret field, below the plain variables."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field in SECRET_FIELDS:
            name = variable(field)
            path = os.environ.get(f"{name}_FILE")
            if not path:
                continue
            if os.environ.get(name):
                raise SecretFileError(f"set {name} or {name}_FILE, not both")
            found[field] = read_secret_file(path, f"{name}_FILE")
        return found


def settings_sources(settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource, env: PydanticBaseSettingsSource,
                     dotenv: PydanticBaseSettingsSource, secrets_dir: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
    """Arguments, then variables, then ``*_FILE`` variables (then pydantic's defaults)."""
    return init, env, SecretFilesSource(settings_cls), dotenv, secrets_dir


def equal_role_tokens(tokens: dict[str, str | None]) -> list[tuple[str, str]]:
    """Pairs of role-token fields that hold the same value (each role needs its own token)."""
    seen: dict[str, str] = {}
    pairs = []
    for field in ROLE_TOKENS:
        value = tokens.get(field)
        if not value:
            continue
        if value in seen:
            pairs.append((seen[value], field))
        else:
            seen[value] = field
    return pairs


def scrub_environment(fields: tuple[str, ...] = SECRET_FIELDS) -> list[str]:
    """Remove the secret variables from this process's environment, everywhere it can be read; the names removed."""
    names = [variable(field) for field in fields if variable(field) in os.environ]
    for name in names:
        os.environ.pop(name)  # also unsetenv(): gone for libraries and child processes
    _overwrite_initial_environment(names)
    return names


def _overwrite_initial_environment(names: list[str]) -> None:
    """Zero ``NAME=value`` in the environment block /proc/<pid>/environ reads (Linux).

    The kernel shows the block the process started with, between env_start and
    env_end (fields 50-51 of /proc/self/stat). Nothing points into it any more
    once the variables are unset: Python copied the environment at start.
    """
    if not names:
        return
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # fields 50 and 51, counted after "pid (comm)"
    except (OSError, IndexError, ValueError):
        log.info("no /proc/self/stat here: secret variables were unset but the initial environment block is left as is")
        return
    block = ctypes.string_at(start, end - start)
    targets = tuple(name.encode() + b"=" for name in names)
    offset = 0
    while offset < len(block):
        stop = block.find(b"\0", offset)
        stop = len(block) if stop < 0 else stop
        if block.startswith(targets, offset):
            ctypes.memset(start + offset, 0, stop - offset)
        offset = stop + 1
