"""`make run`'s SQL token: generated on the first run beside the store, mode 0600, found by the CLI without options."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.aggregator_fixtures import free_port, wait_http_ok

from ai_chargeback_aggregator import local_access
from ai_chargeback_aggregator.cli.main import main


@pytest.fixture(autouse=True)
def _no_configured_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHARGEBACK_SQL_TOKEN", "CHARGEBACK_SQL_TOKEN_FILE", "CHARGEBACK_AGGREGATOR_URL", "CHARGEBACK_STORE_DSN"):
        monkeypatch.delenv(name, raising=False)


def serve_command(store: Path, http_listen: str) -> list[str]:
    return [sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn", f"chdb://{store}",
            "--grpc-listen", f"127.0.0.1:{free_port()}", "--http-listen", http_listen]  # fmt: skip


@contextmanager
def serving(store: Path, **env: str) -> Iterator[str]:
    """`chargeback serve` on `store` (as `make run` does); yields its base URL."""
    http_listen = f"127.0.0.1:{free_port()}"
    store.parent.mkdir(parents=True, exist_ok=True)
    log = store.parent / "serve.log"
    process = subprocess.Popen(serve_command(store, http_listen), env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=open(log, "ab"), preexec_fn=lambda: os.umask(0))  # noqa: SIM115  # fmt: skip
    try:
        wait_http_ok(f"http://{http_listen}/readyz", timeout_s=120)
        yield f"http://{http_listen}"
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_the_cli_reads_through_a_running_aggregator_with_no_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "var" / "chargeback"
    access_file = tmp_path / "var" / "chargeback.sql-access.json"
    with serving(store) as url:  # umask 0: the file must be 0600 all the same
        assert stat.S_IMODE(access_file.stat().st_mode) == 0o600
        first = json.loads(access_file.read_text())
        assert first["url"] == url and len(first["token"]) >= 32
        assert f"SQL token in {access_file}" in (tmp_path / "var" / "serve.log").read_text()
        # The aggregator holds the store: only the SQL endpoint can answer, and the CLI finds it by itself.
        assert main(["sql", "SELECT count() AS n, 40 + 2 AS answer FROM chargeback.usage_events", "--store-dsn", f"chdb://{store}",
                     "--format", "csv"]) == 0  # fmt: skip
        assert capsys.readouterr().out.splitlines() == ["n,answer", "0,42"]
        assert main(["sql", "SELECT * FROM file('/etc/passwd')", "--store-dsn", f"chdb://{store}"]) == 2
        assert "403" in capsys.readouterr().err  # it went through the endpoint, which refused
    with serving(store) as url:
        second = json.loads(access_file.read_text())
        assert second == {"url": url, "token": first["token"]}  # generated once, kept
    # No aggregator running: the CLI opens the store itself.
    assert main(["sql", "SELECT 40 + 2 AS answer", "--store-dsn", f"chdb://{store}", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["answer", "42"]


def test_the_cli_keeps_the_local_token_for_the_local_aggregator_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "chargeback"
    with serving(store) as url:
        elsewhere = f"http://127.0.0.1:{free_port()}"
        assert main(["sql", "SELECT 1", "--store-dsn", f"chdb://{store}", "--aggregator", elsewhere]) == 2
        assert "needs --sql-token" in capsys.readouterr().err  # never sent to another address
        assert main(["sql", "SELECT 1 AS one", "--store-dsn", f"chdb://{store}", "--aggregator", url + "/", "--format", "csv"]) == 0
        assert capsys.readouterr().out.splitlines() == ["one", "1"]


def test_a_configured_token_needs_no_local_file(tmp_path: Path) -> None:
    store = tmp_path / "chargeback"
    with serving(store, CHARGEBACK_SQL_TOKEN="configured-9d2e"):
        assert local_access.path_for(f"chdb://{store}") == tmp_path / "chargeback.sql-access.json"
        assert not (tmp_path / "chargeback.sql-access.json").exists()


def test_a_token_file_others_can_read_stops_the_aggregator(tmp_path: Path) -> None:
    store = tmp_path / "chargeback"
    access_file = tmp_path / "chargeback.sql-access.json"
    access_file.write_text(json.dumps({"url": "http://127.0.0.1:1", "token": "t" * 40}))
    access_file.chmod(0o644)
    done = subprocess.run(serve_command(store, f"127.0.0.1:{free_port()}"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"chmod 600 {access_file}" in done.stderr and "t" * 40 not in done.stderr
