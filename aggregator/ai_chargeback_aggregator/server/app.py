"""The aggregator process: store, writer, gRPC ingest, health and HTTP, started and stopped together."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ai_chargeback_proto import pb, pb_grpc

from ..budgets.alerts import Alerter
from ..budgets.evaluate import BudgetStatus
from ..budgets.feed_state import enforced_state
from ..budgets.monitor import BudgetMonitor, claimant_id
from ..budgets.webhooks import targets_from
from ..ingest.budget_feed import BudgetFeed
from ..ingest.service import IngestService
from ..ingest.writer import Enricher, Writer
from ..pricing.pricer import Pricer
from ..rollups.maintainer import RollupMaintainer
from ..settings import AggregatorSettings
from ..store.clickhouse import Store, StoreError, redact_dsn
from ..store.retention import apply_raw_retention
from . import budget_api, sql_api
from .http_api import HttpApi, ListenError

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["UsageIngest"].full_name
READINESS_INTERVAL_S = 2.0
MAIN_WAKE_S = 0.5


class Aggregator:
    def __init__(self, settings: AggregatorSettings, *, enrich: Enricher | None = None) -> None:
        self.settings = settings
        self.store = Store(settings.store_dsn, database=settings.database, cluster=settings.cluster)
        # Prices every event at ingest; rollups get their own session so a rebuild never holds the insert path.
        self.pricer = Pricer()
        self.rollups = RollupMaintainer(
            Store(settings.store_dsn, database=settings.database, cluster=settings.cluster),
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
            enrich=enrich or self.pricer.enrich,
            after_insert=self._after_insert,
        )
        self.health = health.HealthServicer()
        self.http = HttpApi(settings.http_listen, self.readiness, root_path=settings.http_root_path,
                            trusted_proxies=settings.http_trusted_proxies)
        self.http.routes.update(sql_api.routes(self))
        self.http.routes.update(budget_api.routes(self))
        self.console = None
        if settings.console_enabled:
            from ..console import mount  # the console reads through analytics: imported only when it is on

            self.console, routes = mount(settings)
            self.http.mounts.extend(routes)
        self._grpc: grpc.Server | None = None
        self.grpc_port = 0
        self._stop = threading.Event()
        self._store_ok = False
        self._store_reason = "not checked yet"

    def _budget_monitor(self, settings: AggregatorSettings) -> BudgetMonitor:
        # Own session, as the rollups: a budget pass never holds the insert path.
        store = Store(settings.store_dsn, database=settings.database, cluster=settings.cluster)
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
        ready = self._store_ok and self.writer.store_healthy
        store = self._store_reason if self._store_ok else self._store_reason
        if self._store_ok and not self.writer.store_healthy:
            store = "inserts failing"
        return ready, {"store": store}

    def start(self) -> None:
        self.http.bind()  # a busy port fails here, before migrations and threads
        applied = self.store.migrate()
        log.info("store %s ready; migrations applied: %s", redact_dsn(self.settings.store_dsn), applied or "none")
        log.info("%s", apply_raw_retention(self.store, self.settings.raw_retention_days))
        self.pricer.refresh(self.store)
        self.rollups.reconcile()  # hours written while no aggregator watched (crash between insert and mark)
        self._store_ok, self._store_reason = True, "ok"
        self.writer.start()
        self.rollups.start()
        self.budgets.start()
        threading.Thread(target=self._refresh_prices, name="chargeback-prices", daemon=True).start()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.settings.grpc_max_workers, thread_name_prefix="chargeback-grpc"),
            options=[
                ("grpc.max_receive_message_length", self.settings.grpc_max_message_bytes),
                ("grpc.max_send_message_length", self.settings.grpc_max_message_bytes),
            ],
        )
        token = self.settings.auth_token.get_secret_value() if self.settings.auth_token else None
        pb_grpc.add_UsageIngestServicer_to_server(
            IngestService(self.writer, auth_token=token, store_wait_timeout_s=self.settings.store_wait_timeout_ms / 1000,
                          store=self.store),
            server,
        )
        pb_grpc.add_BudgetFeedServicer_to_server(self.budget_feed, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            self.grpc_port = server.add_secure_port(self.settings.grpc_listen, self._credentials()) if self._tls() else server.add_insecure_port(self.settings.grpc_listen)
        except RuntimeError:
            self.grpc_port = 0
        if not self.grpc_port:
            raise ListenError(f"cannot listen for gRPC on {self.settings.grpc_listen}: address in use or not available; "
                              "set CHARGEBACK_GRPC_LISTEN (or --grpc-listen) to a free host:port")
        server.start()
        self._grpc = server
        self.http.start()
        self._set_serving(True)
        threading.Thread(target=self._watch_store, name="chargeback-readiness", daemon=True).start()
        log.info("gRPC on %s (port %d), HTTP on %s", self.settings.grpc_listen, self.grpc_port, self.settings.http_listen)

    def _tls(self) -> bool:
        return bool(self.settings.tls_cert_path and self.settings.tls_key_path)

    def _credentials(self) -> grpc.ServerCredentials:
        with open(self.settings.tls_key_path, "rb") as key, open(self.settings.tls_cert_path, "rb") as cert:
            pair = (key.read(), cert.read())
        client_ca = None
        if self.settings.tls_client_ca_path:
            with open(self.settings.tls_client_ca_path, "rb") as ca:
                client_ca = ca.read()
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)

    def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)
        self.health.set(SERVICE_NAME, status)

    def _watch_store(self) -> None:
        while not self._stop.wait(READINESS_INTERVAL_S):
            self._store_ok, self._store_reason = self.store.ping()
            self._set_serving(self._store_ok and self.writer.store_healthy)

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
        self._set_serving(False)
        self.budget_feed.close()  # budget streams would otherwise hold the grace period
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait(grace_s + 1)
        self.writer.stop(drain_timeout_s=grace_s)
        self.budgets.stop(timeout_s=grace_s)
        self.budgets.store.close()
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
