"""Problem 5 of issue 16: spools are never orphaned or shared.

Real EventSenders, real spool directories and flocks, a real aggregator over
real gRPC. (tests/e2e/test_spools_e2e.py does the same through the real plugin
server, killed with -9.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.aggregator_fixtures import count_rows, make_event, make_settings, refusing_address, sender_config

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_plugin import sender as sender_module
from ai_chargeback_plugin.sender import EventSender, sender_for
from ai_chargeback_plugin.spool import DiskSpool, node_name
from ai_chargeback_proto import pb, pb_grpc

WAIT_S = 60.0


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("segment-*.log"))


def spooled_events(path: Path) -> int:
    spool = DiskSpool(str(path), 1 << 30)
    total = 0
    while (record := spool.next_unsent()) is not None:
        total += len(record[1].events)
    spool.close()
    return total


def test_two_configs_naming_one_aggregator_each_keep_a_durable_spool(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # the aggregator is down while they spool
    spool = tmp_path / "spool"
    first = EventSender(sender_config(settings.grpc_listen, sender_key="plugin-a", spool_dir=str(spool), batch_max_events=10))
    second = EventSender(sender_config(settings.grpc_listen, sender_key="plugin-b", spool_dir=str(spool), batch_max_events=50,
                                       flush_interval_ms=40))  # fmt: skip
    for i in range(300):
        (first if i % 2 else second).offer(make_event(kong_request_id=f"r{i}"))
    assert not first.flush(1.0) and not second.flush(0.5)
    first.close(1.0)
    second.close(1.0)
    node = spool / node_name()
    assert spooled_events(node / "plugin-a") == 150 and spooled_events(node / "plugin-b") == 150  # both durable, on disk

    agg = Aggregator(settings)
    agg.start()
    again = [EventSender(sender_config(settings.grpc_listen, sender_key=key, spool_dir=str(spool))) for key in ("plugin-a", "plugin-b")]
    try:
        assert all(s.flush(WAIT_S) for s in again)
        assert count_rows(agg) == 300
        _, rows = agg.store.query("SELECT count(), uniqExact(event_id) FROM chargeback.usage_events")
        assert rows[0] == (300, 300)
    finally:
        for s in again:
            s.close()
        agg.stop(grace_s=2)


HOLD = """
import fcntl, sys, time
lock = open(sys.argv[1], "a+b")
fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """plugin-a's first spool slot, locked by another live process (an old plugin server draining)."""
    slot = tmp_path / "spool" / node_name() / "plugin-a"
    slot.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(slot / "lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    try:
        yield slot
    finally:
        holder.communicate(b"")


def test_a_spool_held_by_another_process_moves_to_the_next_slot_not_to_memory(tmp_path: Path, held_elsewhere: Path) -> None:
    settings = make_settings(tmp_path)
    spool = tmp_path / "spool"
    sender = EventSender(sender_config(settings.grpc_listen, sender_key="plugin-a", spool_dir=str(spool)))
    for i in range(40):
        sender.offer(make_event(kong_request_id=f"r{i}"))
    assert not sender.flush(1.0)
    sender.close(1.0)
    assert spooled_events(held_elsewhere.with_name("plugin-a.1")) == 40  # durable in a slot of its own
    assert segments(held_elsewhere) == []


def test_the_spool_drains_to_the_addresses_configured_now(tmp_path: Path) -> None:
    """A failover address added to the config: the events spooled under the old list are not left behind."""
    with refusing_address() as old_address:
        _drain_after_edit(tmp_path, old_address)


def _drain_after_edit(tmp_path: Path, old_address: str) -> None:
    settings = make_settings(tmp_path)
    spool = str(tmp_path / "spool")
    config = sender_config(old_address, sender_key="plugin-edit", spool_dir=spool)
    sender = sender_for(config)
    for i in range(60):
        sender.offer(make_event(kong_request_id=f"r{i}"))
    assert not sender.flush(1.0)
    agg = Aggregator(settings)
    agg.start()
    try:
        edited = sender_for(sender_config(settings.grpc_listen, old_address, sender_key="plugin-edit", spool_dir=spool))
        assert edited is sender  # one plugin config, one sender: reconfigured in place
        assert sender.flush(WAIT_S)
        assert count_rows(agg) == 60
    finally:
        sender.close()
        sender_module._senders.pop("plugin-edit", None)
        agg.stop(grace_s=2)


def test_orphaned_spools_are_adopted_and_drained_then_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    spool = tmp_path / "spool"
    # Left behind: a deleted plugin config's spool on this node, and the address-hash layout of older versions.
    gone = DiskSpool(str(spool / node_name() / "deleted-plugin"), 1 << 20)
    legacy = DiskSpool(str(spool / "0123456789abcdef"), 1 << 20)
    for n, orphan in enumerate((gone, legacy)):
        for b in range(3):
            orphan.append(pb.UsageBatch(batch_id=f"o{n}-{b}", events=[make_event(kong_request_id=f"o{n}-{b}-{i}") for i in range(10)]))
        orphan.close()
    monkeypatch.setattr(sender_module, "ORPHAN_GRACE_S", 0.0)
    monkeypatch.setattr(sender_module, "_next_orphan_sweep_at", 0.0)  # no other sender of this process swept lately
    agg = Aggregator(settings)
    agg.start()
    sender = EventSender(sender_config(settings.grpc_listen, sender_key="live-plugin", spool_dir=str(spool)))
    try:
        sender.offer(make_event())
        deadline = time.monotonic() + WAIT_S
        while count_rows(agg) < 61 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count_rows(agg) == 61
        assert sender.flush(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while (spool / "0123456789abcdef").exists() or (spool / node_name() / "deleted-plugin").exists():
            assert time.monotonic() < deadline, "drained orphans were not removed"
            time.sleep(0.1)
    finally:
        sender.close()
        agg.stop(grace_s=2)


class _Stalled(pb_grpc.UsageIngestServicer):
    """Takes a stream and never answers it: an aggregator stuck behind something."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def StreamUsage(self, request_iterator, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self.release.wait(120)
        return iter(())


def _silent_listener() -> tuple[socket.socket, str]:
    """Accepts TCP connections and never speaks: the gRPC handshake never completes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["stalled-aggregator", "silent-listener", "nobody-listening"])
def test_close_returns_within_its_timeout_and_keeps_what_it_could_not_deliver(tmp_path: Path, kind: str) -> None:
    from concurrent import futures

    stop: list[object] = []
    if kind == "stalled-aggregator":
        stalled = _Stalled()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_UsageIngestServicer_to_server(stalled, server)
        address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        server.start()
        stop += [stalled.release.set, lambda: server.stop(0)]
    elif kind == "silent-listener":
        listener, address = _silent_listener()
        stop.append(listener.close)
    else:  # refused: bound, never listening, until the end (a bare free port can be taken meanwhile)
        refused = socket.socket()
        refused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{refused.getsockname()[1]}"
        stop.append(refused.close)
    spool = str(tmp_path / "spool")
    sender = EventSender(sender_config(address, sender_key="plugin-c", spool_dir=spool, spool_max_bytes=64 << 20))
    try:
        for i in range(5000):
            sender.offer(make_event(kong_request_id=f"r{i}"))
        closer = threading.Thread(target=sender.close, args=(1.0,))
        closer.start()
        # A hang detector, not a speed goal: the old sender could take minutes here.
        closer.join(30)
        assert not closer.is_alive(), "close(1.0) did not return"
    finally:
        for action in stop:
            action()  # type: ignore[operator]
    settings = make_settings(tmp_path)
    agg = Aggregator(settings)
    agg.start()
    again = EventSender(sender_config(settings.grpc_listen, sender_key="plugin-c", spool_dir=spool))
    try:
        assert again.flush(WAIT_S)  # everything offered before the close was kept and is delivered now
        assert count_rows(agg) == 5000
    finally:
        again.close()
        agg.stop(grace_s=2)
