"""The aggregator process: store, writer, gRPC ingest, health and HTTP, started and stopped together.

gRPC runs on an asyncio server (``grpc.aio``) in a thread of its own: an open
stream is a coroutine, not a thread, so the number of gateways is bounded by
``grpc_max_streams``, not by a worker pool. The writer flushes in another
thread; the two meet in the writer's pending list and the tickets it resolves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from ai_chargeback_proto import pb, pb_grpc

from .. import metrics
from ..budgets.alerts import Alerter
from ..budgets.evaluate import BudgetStatus
from ..budgets.feed_state import enforced_state
from ..budgets.monitor import BudgetMonitor, claimant_id
from ..budgets.webhooks import targets_from
from ..ingest.ahead import Enricher
from ..ingest.budget_feed import BudgetFeed
from ..ingest.service import AckHook, IngestService
from ..ingest.writer import Writer
from ..pricing.pricer import Pricer
from ..rollups.maintainer import RollupMaintainer
from ..settings import AggregatorSettings
from ..store.clickhouse import Store, StoreError, is_embedded, redact_dsn
from ..store.engine import release_startup_pages
from ..store.retention import apply_raw_retention
from . import budget_api, reconcile_api, sql_api
from .health import readiness, serving_status
from .heap import return_large_blocks
from .http_api import HttpApi, ListenError

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["UsageIngest"].full_name
READINESS_INTERVAL_S = 2.0
MAIN_WAKE_S = 0.5
LOOP_CALL_TIMEOUT_S = 30.0
# Sender streams sit idle between batches for as long as a gateway is quiet. The senders ping
# every 30 s to keep them (and the middleboxes on the way) alive; gRPC's server default treats
# pings on a stream without data more often than every 5 minutes as abuse and closes the
# connection. Allow them, and ping back, so a gateway that vanished frees its stream.
KEEPALIVE_OPTIONS = (
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)
T = TypeVar("T")


class Aggregator:
    def __init__(self, settings: AggregatorSettings, *, enrich: Enricher | None = None,
                 ack_hooks: tuple[AckHook, ...] = ()) -> None:  # fmt: skip
        self.settings = settings
        self.store = Store.from_settings(settings)
        # Prices every event at ingest; rollups get their own session so a rebuild never holds the insert path.
        self.pricer = Pricer()
        self.rollups = RollupMaintainer(
            Store.from_settings(settings),
            mark_store=self.store,
            interval_s=settings.rollup_interval_s,
            settle_s=settings.rollup_settle_s,
            raw_retention_days=settings.raw_retention_days,
        )
        self.instance_id = claimant_id()
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self.budget_feed = BudgetFeed(auth_token=token, heartbeat_s=settings.budget_feed_heartbeat_s, aggregator_id=self.instance_id)
        self.budgets = self._budget_monitor(settings)
        self.writer = Writer(
            self.store,
            flush_interval_ms=settings.flush_interval_ms,
            flush_max_events=settings.flush_max_events,
            max_pending_events=settings.max_pending_events,
            max_pending_bytes=settings.max_pending_bytes,
            enrich=enrich or self.pricer.enrich,
            after_insert=self._after_insert,
            aggregator_id=f"{socket.gethostname()}/{os.getpid()}/{settings.grpc_listen}",
        )
        self._ack_hooks = ack_hooks
        self.health = health.aio.HealthServicer()
        self.http = HttpApi(
            settings.http_listen, self.readiness, root_path=settings.http_root_path, trusted_proxies=settings.http_trusted_proxies
        )
        self.http.routes.update(sql_api.routes(self))
        self.http.routes.update(budget_api.routes(self))
        self.http.routes.update(reconcile_api.routes(self))
        self.console = None
        if settings.console_enabled:
            from ..console import mount  # the console reads through analytics: imported only when it is on

            self.console, routes = mount(settings)
            self.http.mounts.extend(routes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._grpc: grpc.aio.Server | None = None
        self.grpc_port = 0
        self._stop = threading.Event()
        self._store_ok = False
        self._store_reason = "not checked yet"

    def _budget_monitor(self, settings: AggregatorSettings) -> BudgetMonitor:
        # Own session, as the rollups: a budget pass never holds the insert path.
        store = Store.from_settings(settings)
        alerter = Alerter(store, claimant=self.instance_id, targets=targets_from(settings.budget_webhooks),
                          settle_s=settings.budget_claim_settle_s, lease_s=settings.budget_alert_lease_s,
                          max_attempts=settings.budget_webhook_max_attempts, timeout_s=settings.budget_webhook_timeout_s)  # fmt: skip
        return BudgetMonitor(store, interval_s=settings.budget_interval_s, min_interval_s=settings.budget_min_interval_s,
                             poll_s=settings.budget_poll_s, allocation_config_path=settings.allocation_config_path, alerter=alerter,
                             on_evaluated=self._publish_budgets)  # fmt: skip

    def _publish_budgets(self, statuses: list[BudgetStatus], began: float) -> None:
        self.budget_feed.publish(enforced_state(statuses), evaluated_at=began)

    def _after_insert(self, columns: dict[str, list[Any]]) -> None:
        self.rollups.after_insert(columns)
        self.budgets.usage_stored()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return readiness(self._store_ok, self._store_reason, self.writer)

    def start(self) -> None:
        """A start that fails stops what it started: a thread left running in the engine can hang
        the process's exit, and the HTTP port would stay taken."""
        self.http.bind()  # a busy port fails here, before migrations and threads
        try:
            self._start()
        except BaseException:
            self.stop(grace_s=1)
            raise

    def _start(self) -> None:
        return_large_blocks()  # before the first batch (server/heap.py)
        applied = self.store.migrate()
        log.info("store %s ready; migrations applied: %s", redact_dsn(self.settings.store_dsn), applied or "none")
        log.info("%s", apply_raw_retention(self.store, self.settings.raw_retention_days))
        self.pricer.refresh(self.store)
        self.pricer.load_catalog()
        self.rollups.reconcile()  # hours written while no aggregator watched (crash between insert and mark)
        if self.console is not None:
            self.console.start()
        self._release_startup_pages()
        self._store_ok, self._store_reason = True, "ok"
        self.writer.on_health_change = lambda healthy, reason: self._publish_health()
        self.writer.start()
        self.rollups.start()
        self.budgets.start()
        threading.Thread(target=self._refresh_prices, name="chargeback-prices", daemon=True).start()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="chargeback-grpc", daemon=True)
        self._loop_thread.start()
        # Last: a grpc.aio server that took its port but never started keeps it until the process
        # exits (stop() does not release it), so nothing that can fail comes between bind and start.
        self.grpc_port = self._on_loop(self._start_grpc())
        self.http.start()
        self._publish_health()
        threading.Thread(target=self._watch_store, name="chargeback-readiness", daemon=True).start()
        log.info("gRPC on %s (port %d), HTTP on %s", self.settings.grpc_listen, self.grpc_port, self.settings.http_listen)

    def _release_startup_pages(self) -> None:
        """After the last startup step that runs the engine (store/engine.py release_startup_pages)."""
        if not (self.settings.store_engine_release_startup_pages and is_embedded(self.store.dsn)):
            return
        released_kb = release_startup_pages()
        if released_kb is None:
            log.warning("could not release the embedded engine's startup pages (needs Linux 5.4+ MADV_PAGEOUT): "
                        "its library keeps ~170 MB more in this process's RSS")  # fmt: skip
            return
        if released_kb == 0:
            return  # released by an earlier aggregator of this process
        metrics.ENGINE_PAGES_RELEASED.set(released_kb * 1024)
        log.info("released %d MiB of the embedded engine's library pages that only its start used", released_kb // 1024)

    def _on_loop(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = LOOP_CALL_TIMEOUT_S) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    async def _start_grpc(self) -> int:
        settings = self.settings
        loop = asyncio.get_running_loop()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
                ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
                # New streams wait in gRPC's queue until the server takes them. When a whole
                # fleet (re)connects at once (this aggregator restarted, a balancer moved them),
                # that queue holds thousands; past its default limits (1,000, hard 3,000) gRPC
                # cancels the newest streams with no error the sender could act on.
                ("grpc.server.max_pending_requests", settings.grpc_max_streams),
                ("grpc.server.max_pending_requests_hard_limit", 2 * settings.grpc_max_streams),
                # gRPC's bandwidth-delay probing grows each stream's receive window to what the link
                # carries: on loopback a 1M-event burst from 8 streams had ~200 MB of batches sent
                # ahead, parked in this process before the reader asked for them. Without it a stream
                # has HTTP/2's 64 KiB window beyond the message being read.
                ("grpc.http2.bdp_probe", int(settings.grpc_bdp_probe)),
                # gRPC binds with SO_REUSEPORT by default: a second server of the same user on this
                # port would start without error and the kernel would split the gateways' streams
                # between the two. A busy port must fail here instead (ListenError below).
                ("grpc.so_reuseport", 0),
                *KEEPALIVE_OPTIONS,
            ],
            maximum_concurrent_rpcs=settings.grpc_max_streams,
        )
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        service = IngestService(self.writer, auth_token=token, store_wait_timeout_s=settings.store_wait_timeout_ms / 1000,
                                ack_hooks=self._ack_hooks)  # fmt: skip
        self.writer.on_room = lambda: None if loop.is_closed() else loop.call_soon_threadsafe(service.room_freed)
        pb_grpc.add_UsageIngestServicer_to_server(service, server)
        pb_grpc.add_BudgetFeedServicer_to_server(self.budget_feed, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        tls = bool(settings.tls_cert_path and settings.tls_key_path)
        try:
            port = (
                server.add_secure_port(settings.grpc_listen, self._credentials())
                if tls
                else server.add_insecure_port(settings.grpc_listen)
            )
        except RuntimeError:  # grpcio raises on a busy address where older releases returned 0
            port = 0
        if not port:
            raise ListenError(
                f"cannot listen for gRPC on {settings.grpc_listen}: address in use or not available; "
                "set CHARGEBACK_GRPC_LISTEN (or --grpc-listen) to a free host:port"
            )
        await server.start()
        self._grpc = server
        return port

    def _credentials(self) -> grpc.ServerCredentials:
        with open(self.settings.tls_key_path, "rb") as key, open(self.settings.tls_cert_path, "rb") as cert:
            pair = (key.read(), cert.read())
        client_ca = None
        if self.settings.tls_client_ca_path:
            with open(self.settings.tls_client_ca_path, "rb") as ca:
                client_ca = ca.read()
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)

    def _publish_health(self, *, stopping: bool = False) -> None:
        """gRPC health follows readiness (called from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        status = serving_status(self.readiness()[0] and not stopping)

        async def publish() -> None:
            await self.health.set("", status)
            await self.health.set(SERVICE_NAME, status)

        asyncio.run_coroutine_threadsafe(publish(), loop)

    def _watch_store(self) -> None:
        while not self._stop.wait(READINESS_INTERVAL_S):
            self._store_ok, self._store_reason = self.store.ping()
            self._publish_health()

    def _refresh_prices(self) -> None:
        """Overrides loaded by another process (server store) reach this pricer within the interval."""
        while not self._stop.wait(self.settings.prices_refresh_interval_s):
            try:
                self.pricer.refresh(self.store)
            except StoreError as exc:
                log.warning("price override refresh failed, keeping the current ones: %s", exc)

    def stop(self, grace_s: float = 10.0) -> None:
        """Graceful: refuse new streams, let in-flight batches finish and flush, then close."""
        self._stop.set()
        self._publish_health(stopping=True)
        self.budget_feed.close()  # budget streams would otherwise hold the grace period
        if self._grpc is not None and self._loop is not None:
            # The writer keeps flushing meanwhile, so batches in flight are acked before streams close.
            try:
                self._on_loop(self._grpc.stop(grace_s), timeout_s=grace_s + 5)
            except Exception:
                log.exception("gRPC server did not stop cleanly")
            self._grpc = None
        self.writer.stop(drain_timeout_s=grace_s)
        self.budgets.stop(timeout_s=grace_s)
        self.budgets.store.close()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
            if not self._loop.is_running():
                self._loop.close()
        self.rollups.stop(timeout_s=grace_s)
        self.rollups.close()
        self.http.stop()
        if self.console is not None:
            self.console.close()
        self.store.close()

    def wait(self) -> None:
        # Wake up now and then: Python runs a signal handler (SIGTERM -> request_stop) only
        # when the main thread executes bytecode, and a lock wait without timeout may never return.
        while not self._stop.wait(MAIN_WAKE_S):
            pass

    def request_stop(self) -> None:
        self._stop.set()
