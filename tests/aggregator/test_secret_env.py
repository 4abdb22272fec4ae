"""Secrets: given as files (*_FILE), one token per role, and gone from the aggregator's environment once read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError
from support.aggregator_fixtures import free_port, wait_http_ok

from ai_chargeback_aggregator.secret_env import SecretFileError, read_secret
from ai_chargeback_aggregator.settings import AggregatorSettings

ROLE_VARIABLES = ("CHARGEBACK_AUTH_TOKEN", "CHARGEBACK_SQL_TOKEN", "CHARGEBACK_ADMIN_TOKEN")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*ROLE_VARIABLES, "CHARGEBACK_STORE_DSN", "CHARGEBACK_SQL_STORE_DSN"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


def secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_every_secret_can_be_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"CHARGEBACK_AUTH_TOKEN": "ingest-f1", "CHARGEBACK_SQL_TOKEN": "analyst-f2", "CHARGEBACK_ADMIN_TOKEN": "admin-f3",
              "CHARGEBACK_SQL_STORE_DSN": "http://analyst:pw@ch:8123", "CHARGEBACK_STORE_DSN": "http://chargeback:pw@ch:8123"}  # fmt: skip
    for name, value in values.items():
        # Kubernetes and Docker secrets usually end with a newline; it is not part of the secret.
        monkeypatch.setenv(f"{name}_FILE", secret_file(tmp_path, name, value + "\n"))
    settings = AggregatorSettings()
    assert settings.auth_token and settings.auth_token.get_secret_value() == "ingest-f1"
    assert settings.sql_token and settings.sql_token.get_secret_value() == "analyst-f2"
    assert settings.admin_token and settings.admin_token.get_secret_value() == "admin-f3"
    assert settings.sql_store_dsn and settings.sql_store_dsn.get_secret_value() == "http://analyst:pw@ch:8123"
    assert settings.store_dsn == "http://chargeback:pw@ch:8123"
    assert read_secret("sql_token") == "analyst-f2"  # what the CLI reads


def test_a_secret_file_that_cannot_be_used_is_an_error_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_SQL_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(SecretFileError, match="CHARGEBACK_SQL_TOKEN_FILE: cannot read"):
        AggregatorSettings()
    monkeypatch.setenv("CHARGEBACK_SQL_TOKEN_FILE", secret_file(tmp_path, "empty", "\n"))
    with pytest.raises(SecretFileError, match="CHARGEBACK_SQL_TOKEN_FILE: .* is empty"):
        AggregatorSettings()
    monkeypatch.setenv("CHARGEBACK_SQL_TOKEN_FILE", secret_file(tmp_path, "ok", "t"))
    monkeypatch.setenv("CHARGEBACK_SQL_TOKEN", "other")
    with pytest.raises(SecretFileError, match="set CHARGEBACK_SQL_TOKEN or CHARGEBACK_SQL_TOKEN_FILE, not both"):
        AggregatorSettings()


@pytest.mark.parametrize(("first", "second"), [(0, 1), (0, 2), (1, 2)])
def test_two_roles_with_one_token_are_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch, first: int, second: int) -> None:
    for index, name in enumerate(ROLE_VARIABLES):
        monkeypatch.setenv(name, "shared-3f9a" if index in (first, second) else f"own-{index}")
    with pytest.raises(ValidationError) as caught:
        AggregatorSettings()
    message = str(caught.value)
    assert f"{ROLE_VARIABLES[first]} and {ROLE_VARIABLES[second]} are equal" in message
    assert "shared-3f9a" not in message


def test_equal_tokens_from_a_file_and_a_variable_are_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEBACK_ADMIN_TOKEN_FILE", secret_file(tmp_path, "admin", "same-7c\n"))
    monkeypatch.setenv("CHARGEBACK_AUTH_TOKEN", "same-7c")
    with pytest.raises(ValidationError, match="CHARGEBACK_AUTH_TOKEN and CHARGEBACK_ADMIN_TOKEN are equal"):
        AggregatorSettings()


def test_the_aggregator_refuses_to_start_with_equal_tokens(tmp_path: Path) -> None:
    env = {**os.environ, "CHARGEBACK_SQL_TOKEN": "same-e1", "CHARGEBACK_ADMIN_TOKEN": "same-e1"}
    done = subprocess.run([sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn", f"chdb://{tmp_path / 's'}",
                           "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert "CHARGEBACK_SQL_TOKEN and CHARGEBACK_ADMIN_TOKEN are equal" in done.stderr and "same-e1" not in done.stderr
    assert not (tmp_path / "s").exists()  # refused before touching the store


def test_a_running_aggregator_keeps_no_token_in_its_environment(tmp_path: Path) -> None:
    http_listen = f"127.0.0.1:{free_port()}"
    tokens = {"CHARGEBACK_AUTH_TOKEN": "ingest-env-8812", "CHARGEBACK_ADMIN_TOKEN": "admin-env-4471"}
    env = {**os.environ, **tokens, "CHARGEBACK_SQL_TOKEN_FILE": secret_file(tmp_path, "sql", "analyst-file-2290\n"),
           "CHARGEBACK_MARKER_FOR_TEST": "still-here"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn",
                                f"chdb://{tmp_path / 'store'}", "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", http_listen],
                               env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "wb"))  # noqa: SIM115  # fmt: skip
    try:
        wait_http_ok(f"http://{http_listen}/readyz", timeout_s=120)
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        for value in (*tokens.values(), "analyst-file-2290"):
            assert value.encode() not in environ, value
        assert b"CHARGEBACK_AUTH_TOKEN=" not in environ and b"CHARGEBACK_ADMIN_TOKEN=" not in environ
        assert b"CHARGEBACK_MARKER_FOR_TEST=still-here" in environ  # only secrets go
        request = urllib.request.Request(f"http://{http_listen}/v1/sql", data=b'{"sql": "SELECT 1"}', method="POST",
                                         headers={"authorization": "Bearer analyst-file-2290"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:  # the token still works: it was read, then hidden
            assert answer.status == 200
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert "ingest-env-8812" not in (tmp_path / "log").read_text()


SCRUB_PROBE = textwrap.dedent("""
    import os, sys
    from ai_chargeback_aggregator.secret_env import scrub_environment
    if sys.argv[1] == "unset-only":
        os.environ.pop("CHARGEBACK_SQL_TOKEN")
    else:
        scrub_environment()
    print(b"probe-4b1e" in open("/proc/self/environ", "rb").read())
""")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="Linux /proc")
def test_unsetting_is_not_enough_which_is_why_the_block_is_overwritten() -> None:
    env = {**os.environ, "CHARGEBACK_SQL_TOKEN": "probe-4b1e"}
    seen = {mode: subprocess.run([sys.executable, "-c", SCRUB_PROBE, mode], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip() for mode in ("unset-only", "scrub")}  # fmt: skip
    assert seen == {"unset-only": "True", "scrub": "False"}
