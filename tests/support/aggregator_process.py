"""The aggregator as a real process (`chargeback serve`), for tests that kill or stop it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from ai_chargeback_aggregator.store.clickhouse import Store
from support.aggregator_fixtures import wait_http_ok

STARTUP_TIMEOUT_S = 240.0


def start_serve(settings_dsn: str, grpc_listen: str, http_listen: str, log_path: Path,
                sql_token: str = "", env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    env = {**os.environ, "CHARGEBACK_FLUSH_INTERVAL_MS": "100", **(env or {})}
    if sql_token:
        env["CHARGEBACK_SQL_TOKEN"] = sql_token
    process = subprocess.Popen(
        [sys.executable, "-m", "ai_chargeback_aggregator.cli.main", "serve", "--store-dsn", settings_dsn,
         "--grpc-listen", grpc_listen, "--http-listen", http_listen],
        stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"), env=env,  # noqa: SIM115
    )  # fmt: skip
    # Generous: at load 20+ a `chargeback serve` took 65-126 s from start to ready (interpreter and
    # imports alone up to 2 min), and the old 60 s wait failed 4-5 tests of one full run. The deadline
    # only bounds a hang; a server that never got ready is killed, not left running for the session.
    try:
        wait_http_ok(f"http://{http_listen}/readyz", timeout_s=STARTUP_TIMEOUT_S)
    except BaseException:
        process.kill()
        process.wait(30)
        raise
    return process


def store_counts(dsn: str) -> tuple[int, int, int]:
    """(raw rows, distinct ids, rows after FINAL), read after the aggregator process exited."""
    store = Store(dsn)
    try:
        _, rows = store.query(
            "SELECT (SELECT count() FROM chargeback.usage_events), (SELECT uniqExact(event_id) FROM chargeback.usage_events), "
            "(SELECT count() FROM chargeback.usage_events FINAL)"
        )
        return rows[0]  # type: ignore[return-value]
    finally:
        store.close()




def remote_count(http_listen: str, sql_token: str, sql: str) -> int:
    """One number from a running aggregator's read-only SQL endpoint."""
    request = urllib.request.Request(f"http://{http_listen}/v1/sql", data=json.dumps({"sql": sql}).encode(),
                                     headers={"authorization": f"Bearer {sql_token}", "content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.loads(response.read())["rows"][0][0])
