"""`make demo`: send a realistic mix of LLM traffic through the whole metering path, no Kong install needed.

The traffic goes: OpenAI/Anthropic SDK clients -> the Kong harness front configured
from kong.yml (routes, key-auth consumers, plugin config) -> the real ai-chargeback
plugin server -> gRPC -> the aggregator -> ClickHouse, with a local mock LLM upstream.

Where it lands:
- an aggregator already running (`make run` in another terminal) receives it, and
  keeps it: the CLI reads it back through that aggregator;
- otherwise the demo starts `chargeback serve` on the same store `make run` uses
  (./var/chargeback), stops it when the traffic is stored, and the CLI reads the
  store directly.
Either way the data stays, so `chargeback report` etc. answer afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Kong harness and the mock LLM are test support

import anthropic  # noqa: E402
import openai  # noqa: E402
from kong_harness import PluginServerProcess  # noqa: E402
from support.gateway import PLUGIN, front_for, kong_config_for  # noqa: E402
from support.mock_llm import MockLLM  # noqa: E402

from ai_chargeback_aggregator.cli.aggregator_client import running_aggregator  # noqa: E402
from ai_chargeback_aggregator.settings import AggregatorSettings  # noqa: E402

STORE = ROOT / "var" / "chargeback"
BIN = Path(sys.executable).parent
CONSUMERS = {"checkout-service": "demo-key-checkout", "fraud-scoring": "demo-key-fraud",
             "support-bot": "demo-key-support", "legacy-batch": "demo-key-legacy"}  # fmt: skip
# The mock answers with as many output tokens as asked: enough for costs to show in cents.
LONG_ANSWER = {"x-mock-output-tokens": "1500"}
STORED_METRIC = re.compile(r"^chargeback_events_stored_total (\S+)$", re.MULTILINE)


def send_traffic(url: str) -> int:
    sent = 0
    for consumer, key in CONSUMERS.items():
        client = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", default_headers={"apikey": key}, max_retries=0)
        for turn in range(3):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"{consumer} question {turn}: summarize our spend"}],
                extra_headers={"x-mock-cached-tokens": "8", "x-mock-reasoning-tokens": str(turn * 5), **LONG_ANSWER},
            )  # fmt: skip
            sent += 1
        for _ in client.chat.completions.create(model="gpt-4o", stream=True,
                                                messages=[{"role": "user", "content": f"{consumer}: stream a haiku"}]):  # fmt: skip
            pass
        sent += 1
    claude = anthropic.Anthropic(base_url=f"{url}/anthropic", api_key="unused",
                                 default_headers={"apikey": CONSUMERS["fraud-scoring"]}, max_retries=0)  # fmt: skip
    for turn in range(4):
        claude.messages.create(model="claude-3-5-sonnet-latest", max_tokens=300,
                               messages=[{"role": "user", "content": f"score transaction {turn}"}],
                               extra_headers={"x-mock-cached-tokens": "6", "x-mock-cache-creation-tokens": "4", **LONG_ANSWER})  # fmt: skip
        sent += 1
    # A spoofed header from an authenticated consumer: recorded as a conflict, not obeyed.
    spoof = openai.OpenAI(base_url=f"{url}/openai/v1", api_key="unused", max_retries=0,
                          default_headers={"apikey": CONSUMERS["support-bot"], "x-team": "payments"})  # fmt: skip
    spoof.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "bill this to payments"}])
    return sent + 1


def events_stored(base_url: str) -> float:
    """The aggregator's own count of events it committed (its /metrics needs no token)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
        match = STORED_METRIC.search(response.read().decode())
    return float(match.group(1)) if match else 0.0


def wait_until_stored(base_url: str, before: float, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while events_stored(base_url) < before + count:
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the aggregator at {base_url} stored {events_stored(base_url) - before:.0f} of {count} events")
        time.sleep(0.1)


@contextmanager
def aggregator() -> Iterator[tuple[str, str, bool]]:
    """(HTTP base URL, gRPC address, started here): the running one, else `chargeback serve` on ./var/chargeback."""
    settings = AggregatorSettings()
    running = running_aggregator()
    if running:
        yield running, settings.grpc_listen, False
        return
    STORE.parent.mkdir(parents=True, exist_ok=True)
    log = STORE.parent / "demo-aggregator.log"
    process = subprocess.Popen([str(BIN / "chargeback"), "serve", "--store-dsn", f"chdb://{STORE}"],
                               stdout=subprocess.DEVNULL, stderr=open(log, "ab"))  # noqa: SIM115  # fmt: skip
    host, _, port = settings.http_listen.rpartition(":")
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base_url + "/readyz", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"demo: the aggregator did not start; its log: {log}") from None
                time.sleep(0.2)
        yield base_url, settings.grpc_listen, True
    finally:
        process.terminate()  # SIGTERM: it flushes what it received, then exits
        process.wait(timeout=60)


def main() -> int:
    with aggregator() as (base_url, grpc_address, started_here), tempfile.TemporaryDirectory(prefix="chargeback-demo-") as tmp:
        where = f"the aggregator started for this demo on {STORE}" if started_here else f"the running aggregator at {base_url}"
        print(f"sending traffic through kong.yml's routes to {where}")
        llm = MockLLM().start()
        plugin_server = PluginServerProcess.for_console_script(
            "ai-chargeback-pluginserver", gevent=True, prefix=Path(tmp) / "kong", log_path=Path(tmp) / "pluginserver.log"
        )
        (Path(tmp) / "kong").mkdir()
        front = None
        try:
            config = kong_config_for(grpc_address, Path(tmp) / "spool")
            front = front_for(config, {PLUGIN: plugin_server}, llm.url)  # kong.yml's vault references: demo keys
            before = events_stored(base_url)
            sent = send_traffic(front.url)
            front.wait_for_logs(60)
            wait_until_stored(base_url, before, sent)
            front.raise_failures()
        finally:
            if front is not None:
                front.stop()
            plugin_server.stop()
            llm.stop()
    print(f"{sent} requests metered and stored.\n")
    month = datetime.now(UTC).strftime("%Y-%m")
    command = [str(BIN / "chargeback"), "report", "--by", "team", "--month", month]
    print("$ chargeback report --by team --month", month)
    shown = subprocess.run(command, env=os.environ)
    print(f"\nNext: chargeback statement --team payments --month {month} --out payments.html, "
          f"chargeback governance readiness --month {month}, chargeback explain HANDLE (README.md).")  # fmt: skip
    return 0 if shown.returncode in (0, 1) else shown.returncode


if __name__ == "__main__":
    sys.exit(main())
