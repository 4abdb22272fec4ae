from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from ai_chargeback_aggregator.ingest.admission import admit
from ai_chargeback_aggregator.ingest.writer import Ticket, Writer
from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_aggregator.settings import AggregatorSettings
from ai_chargeback_plugin.config import SenderConfig
from ai_chargeback_plugin.ids import uuid7
from ai_chargeback_proto import pb, pb_grpc

# Below Linux's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default): a port the
# kernel picked for `bind(0)` goes back to that pool once closed, and any outgoing connection of the
# test run may take it as its local port before the server under test binds it ("Address already in
# use", seen once in a full run). Ports from this range are never handed out that way.
_TEST_PORTS = range(20_000, 32_000)
_PICK = random.SystemRandom()  # tests that seed `random` must not make two runs on one machine pick alike


def free_port() -> int:
    """A port nothing listens on now, outside the range the kernel gives to outgoing connections."""
    for _ in range(200):
        port = _PICK.choice(_TEST_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_TEST_PORTS} after 200 tries")


@contextmanager
def refusing_address() -> Iterator[str]:
    """An address that refuses connections for as long as the block runs: bound, never listening,
    so no other server of the test run can take the port meanwhile (a bare ``free_port`` can be reused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


def make_event(**overrides: object) -> pb.UsageEvent:
    now = int(time.time() * 1000)
    fields: dict[str, object] = dict(
        event_id=uuid7(now), kong_request_id="req-1", started_at_unix_ms=now - 50, observed_at_unix_ms=now,
        tenant="acme", tenant_source=pb.IDENTITY_SOURCE_CONSUMER, team="payments",
        team_source=pb.IDENTITY_SOURCE_CONSUMER, app="checkout", app_source=pb.IDENTITY_SOURCE_CONSUMER,
        provider="openai", api_family="openai.chat", requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini-2024-07-18", input_tokens=120, cached_input_tokens=20, output_tokens=30,
        reasoning_tokens=0, usage_source=pb.USAGE_SOURCE_PROVIDER, http_status=200, upstream_tries=1,
        policy_outcome=pb.POLICY_OUTCOME_ALLOWED,
    )  # fmt: skip
    fields.update(overrides)
    return pb.UsageEvent(**fields)  # type: ignore[arg-type]


def submit_events(writer: Writer, events: list[pb.UsageEvent], name: str) -> Ticket:
    """One batch straight to a writer, admitted as the aggregator admits it (embedded store rules)."""
    batch = pb.UsageBatch(batch_id=name, sender_id="node-a", sequence=1, events=events)
    return writer.submit(admit(batch, int(time.time() * 1000), store_checks=True))


def written(ticket: Ticket) -> tuple[int, int]:
    """(stored, duplicates) once the writer has settled the ticket."""
    assert ticket.wait(60)
    return ticket.outcome.stored, ticket.outcome.duplicates


def make_settings(tmp_path: Path, **overrides: object) -> AggregatorSettings:
    values: dict[str, object] = dict(
        store_dsn=f"chdb://{tmp_path / 'store'}",
        grpc_listen=f"127.0.0.1:{free_port()}",
        http_listen=f"127.0.0.1:{free_port()}",
        flush_interval_ms=50,
        console_users_path=str(tmp_path / "console-users.yaml"),
    )
    values.update(overrides)
    return AggregatorSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[Aggregator]:
    agg = Aggregator(make_settings(tmp_path))
    agg.start()
    try:
        yield agg
    finally:
        agg.stop(grace_s=2)


def stub_for(agg: Aggregator) -> tuple[grpc.Channel, pb_grpc.UsageIngestStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{agg.grpc_port}")
    return channel, pb_grpc.UsageIngestStub(channel)


def count_rows(agg: Aggregator, where: str = "1") -> int:
    _, rows = agg.store.query(f"SELECT count() FROM chargeback.usage_events FINAL WHERE {where}")
    return int(rows[0][0])


def sender_config(*addresses: str, **overrides: object) -> SenderConfig:
    values: dict[str, object] = dict(
        sender_key="test-plugin", aggregator_addresses=addresses, aggregator_tls=False, aggregator_ca_cert_path="", aggregator_token="",
        aggregator_client_cert_path="", aggregator_client_key_path="",
        queue_max_events=10_000, batch_max_events=200, flush_interval_ms=20, spool_dir="", spool_max_bytes=1 << 20,
    )  # fmt: skip
    values.update(overrides)
    return SenderConfig(**values)  # type: ignore[arg-type]


def wait_http_ok(url: str, timeout_s: float = 60.0) -> None:
    """Poll until `url` answers 200 (a process we started is ready)."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)
