"""Problem 4 of issue 16: the writer survives a full disk and recovers by itself.

A real `chargeback serve` process keeps its embedded store on a small tmpfs; the
test fills that filesystem while a real EventSender streams 2,000 events, checks
that readiness and gRPC health say NOT_SERVING while nothing can be stored, frees
the space, and checks that every event is then stored exactly once, by the same
process, without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.aggregator_fixtures import make_event, make_settings, sender_config
from support.aggregator_process import start_serve, store_counts

from ai_chargeback_plugin.sender import EventSender

WAIT_S = 120.0


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write one file until the filesystem has no space left; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 4096, 1):  # big writes, then down to the last free byte
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def readyz(http_listen: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://{http_listen}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def grpc_serving(grpc_listen: str) -> int:
    with grpc.insecure_channel(grpc_listen) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="chargeback.v1.UsageIngest"),
                                                          timeout=5)  # fmt: skip
        return reply.status


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.2)


def test_a_full_disk_makes_the_aggregator_unready_and_it_recovers_by_itself(tmp_path: Path, small_tmpfs: Path) -> None:
    settings = make_settings(tmp_path, store_dsn=f"chdb://{small_tmpfs / 'store'}")
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "aggregator.log")
    sender = EventSender(sender_config(settings.grpc_listen, spool_dir=str(tmp_path / "spool"), spool_max_bytes=64 << 20))
    try:
        for i in range(500):
            sender.offer(make_event(kong_request_id=f"before-{i}"))
        assert sender.flush(WAIT_S)

        filler = fill(small_tmpfs)
        for i in range(2000):
            sender.offer(make_event(kong_request_id=f"during-{i}"))
        eventually(lambda: readyz(settings.http_listen)[0] == 503, "/readyz answers 503 while the disk is full")
        status, body = readyz(settings.http_listen)
        assert body["ready"] is False and str(body["checks"]["store"]).startswith("inserts failing")  # type: ignore[index]
        assert grpc_serving(settings.grpc_listen) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not sender.flush(1.0)  # nothing is acked while nothing can be stored
        assert server.poll() is None  # ...and the process is alive

        filler.unlink()  # space comes back
        eventually(lambda: readyz(settings.http_listen)[0] == 200, "/readyz answers 200 again without a restart")
        assert sender.flush(WAIT_S), sender.counters
        eventually(lambda: grpc_serving(settings.grpc_listen) == health_pb2.HealthCheckResponse.SERVING, "gRPC health SERVING")
        assert sender.counters.dropped == 0
    finally:
        sender.close(5)
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert store_counts(settings.store_dsn) == (2500, 2500, 2500)  # raw, distinct ids, FINAL: each event once


def test_an_idle_aggregator_that_found_the_disk_full_comes_back_with_no_traffic(tmp_path: Path, small_tmpfs: Path) -> None:
    """A balancer sends no traffic to an unready aggregator: recovery cannot wait for a batch."""
    settings = make_settings(tmp_path, store_dsn=f"chdb://{small_tmpfs / 'store'}", store_wait_timeout_ms=500)
    server = start_serve(settings.store_dsn, settings.grpc_listen, settings.http_listen, tmp_path / "aggregator.log")
    sender = EventSender(sender_config(settings.grpc_listen, spool_dir=str(tmp_path / "spool")))
    try:
        filler = fill(small_tmpfs)
        for i in range(50):
            sender.offer(make_event(kong_request_id=f"r{i}"))
        eventually(lambda: readyz(settings.http_listen)[0] == 503, "unready once a write failed")
        sender.close(2)  # the gateway goes away: its 50 events stay in its spool, nothing is pending
        filler.unlink()
        eventually(lambda: readyz(settings.http_listen)[0] == 200, "ready again from the write probes alone")
        again = EventSender(sender_config(settings.grpc_listen, spool_dir=str(tmp_path / "spool")))
        try:
            assert again.flush(WAIT_S)
        finally:
            again.close(5)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert store_counts(settings.store_dsn) == (50, 50, 50)
