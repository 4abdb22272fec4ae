"""Aggregator settings: every default written once, overridable by CHARGEBACK_* env vars."""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .secret_env import ROLE_TOKENS, equal_role_tokens, settings_sources, variable

DEFAULT_STORE_DSN = "chdb://./var/chargeback"
DEFAULT_GRPC_LISTEN = "127.0.0.1:50051"
DEFAULT_HTTP_LISTEN = "127.0.0.1:8080"


class BudgetWebhook(BaseModel):
    """One named target for budget alerts: generic JSON, or a Slack-compatible body."""

    model_config = {"extra": "forbid"}

    url: SecretStr  # Slack webhook URLs are credentials
    format: Literal["json", "slack"] = "json"
    token: SecretStr | None = None  # sent as a bearer token

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("a webhook url starts with http:// or https://")
        return value


class AggregatorSettings(BaseSettings):
    """Settings of one aggregator process.

    store_dsn: ``chdb:///path`` (embedded ClickHouse, the default) or a ClickHouse
    server URL such as ``http://user:pass@host:8123``; nothing else changes.

    Secrets (the three tokens, both DSNs and the console's session and OpenID client secrets) may also be given as files:
    ``CHARGEBACK_X_FILE`` (secret_env.py).
    """

    # Errors never echo what was given: it may be a token.
    model_config = SettingsConfigDict(env_prefix="CHARGEBACK_", extra="forbid", hide_input_in_errors=True)

    store_dsn: str = DEFAULT_STORE_DSN
    database: str = Field(default="chargeback", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # Non-empty: migrations create ON CLUSTER Replicated tables behind Distributed ones.
    cluster: str = Field(default="", pattern=r"^[A-Za-z0-9_]{0,64}$")

    grpc_listen: str = DEFAULT_GRPC_LISTEN
    http_listen: str = DEFAULT_HTTP_LISTEN
    # Open sender streams served at once (one per plugin config per Kong node). A stream is a
    # coroutine, not a thread: idle ones cost a few KB. Past this, new streams get RESOURCE_EXHAUSTED.
    grpc_max_streams: int = Field(default=10_000, ge=1, le=1_000_000)
    grpc_max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    # Off: each stream may send 64 KiB beyond the batch being read (HTTP/2's window), which bounds
    # what waits in gRPC's buffers; on, gRPC grows the window to the link's bandwidth x delay
    # (hundreds of MB held on loopback during a burst). Turn on only for few senders far away.
    grpc_bdp_probe: bool = False

    # ClickHouse wants few large inserts: coalesce batches from every stream.
    flush_interval_ms: int = Field(default=1000, ge=1, le=60_000)
    # The embedded engine needs about 3 KB of memory per row while it writes one insert: 15k rows
    # keep that near 45 MB (raise it with a ClickHouse server, or with memory to spare). Each insert
    # also costs ~25-30 ms whatever its size (planning its SELECT and the 80-column table, writing a
    # part), so larger inserts cost less engine CPU per row, and leave fewer parts to merge.
    # Measured here against 12k (2026-12-07, alternated runs): a 1M burst in 5,000-event batches
    # (10k or 15k per insert) 70k -> 85k events/s, peaks 439-443 -> 440-448 MB; 1,000-event
    # batches +3%; exactly once at 5M 472 MB. At 18k the 1,000-event runs peaked ~30 MB higher for
    # no more events/s. Events as the plugin sends them reach the byte share first (~8k).
    flush_max_events: int = Field(default=15_000, ge=1)
    # What received batches may hold in memory while they wait for the store: events, and their
    # encoded size (a waiting event costs about 2.5 times its encoding in Python objects). Past
    # either cap a batch waits for room while the store keeps up, and is refused with
    # RESOURCE_EXHAUSTED while it does not; senders keep it spooled meanwhile. A flush starts
    # once two fifths of the byte cap wait, so inserts stay a few MB and the store's memory with them.
    # Four inserts' worth: one being written and the next being readied stay pending until acked,
    # and admission needs room behind them to keep the writer fed.
    max_pending_events: int = Field(default=60_000, ge=1)
    max_pending_bytes: int = Field(default=10 * 1024 * 1024, ge=1024 * 1024)
    # How long a stream waits for its batch to be stored before answering RETRY.
    store_wait_timeout_ms: int = Field(default=30_000, ge=100)
    # The embedded engine's memory (store/engine.py; a ClickHouse server has its own configuration).
    # Left alone it sizes itself for a host of its own: a limit of 90% of RAM, caches of 5 GiB each.
    # memory: all it may have allocated (queries, inserts, merges, caches); past it the query that
    # allocates fails with MEMORY_LIMIT_EXCEEDED (an insert is retried, an analyst query answers
    # `kind: limit`). It tracks ~60 MB through a 1M-event burst; one analyst query may take 256 MiB.
    store_engine_memory_mb: int = Field(default=1024, ge=128)
    # Freed memory its allocator may keep mapped before handing it back (default: 20% of the limit).
    store_engine_dirty_mb: int = Field(default=16, ge=1)
    # How long its allocator keeps freed pages before returning them (chDB's own 5000 ms). 0 returns
    # them at once: ~40 MB less at a burst's peak, for 20-25% fewer events/s through it.
    store_engine_dirty_decay_ms: int = Field(default=5000, ge=0, le=60_000)
    # After start, give back the pages of chDB's library that only starting it read (~170 MB of the
    # process's RSS, clean file pages: store/engine.py). The console's first queries fault the ones
    # they need back in, from the page cache or the disk.
    store_engine_release_startup_pages: bool = True
    # The most each of its read caches (column marks, index marks, primary index, query condition,
    # compiled expressions) holds.
    store_engine_cache_mb: int = Field(default=32, ge=1)

    auth_token: SecretStr | None = None
    tls_cert_path: str = ""
    tls_key_path: str = ""
    tls_client_ca_path: str = ""  # set: clients must present a certificate it signed (mTLS)

    sql_token: SecretStr | None = None
    # On a ClickHouse server, POST /v1/sql logs in as this read-only user (deploy/clickhouse/users.d/chargeback-readonly.xml).
    sql_store_dsn: SecretStr | None = None
    # Bearer token for the admin writes over HTTP (POST /v1/prices, /v1/reprice); unset = disabled.
    admin_token: SecretStr | None = None
    raw_retention_days: int = Field(default=0, ge=0)  # 0 keeps raw events forever, else >= 36

    # Pricing and rollups (aggregator/pricing, aggregator/rollups).
    prices_refresh_interval_s: float = Field(default=60.0, gt=0)
    rollup_interval_s: float = Field(default=30.0, gt=0)
    # A dirty hour is rebuilt once no write touched it for this long (the current hour waits until it goes quiet).
    rollup_settle_s: float = Field(default=60.0, ge=0)
    # Chargeback policy (platform fee, unattributed usage, FOCUS billing account): one YAML file.
    allocation_config_path: str = ""

    # Budgets (aggregator/budgets, docs/budgets.md). Evaluated every budget_interval_s; sooner after
    # usage is stored (here at once, by another aggregator within budget_poll_s), at most every
    # budget_min_interval_s: part of the gateways' enforcement latency.
    budget_interval_s: float = Field(default=10.0, gt=0)
    budget_min_interval_s: float = Field(default=1.0, ge=0)
    budget_poll_s: float = Field(default=0.5, gt=0)
    # Alert claims: how long a claimant waits before reading who claimed first (the
    # double-firing bound), and how long a delivery may go silent before it is taken over.
    budget_claim_settle_s: float = Field(default=2.0, ge=0)
    budget_alert_lease_s: float = Field(default=300.0, gt=0)
    # name -> {"url": ..., "format": "json"|"slack", "token": ...} (JSON in CHARGEBACK_BUDGET_WEBHOOKS)
    budget_webhooks: dict[str, BudgetWebhook] = Field(default_factory=dict)
    budget_webhook_timeout_s: float = Field(default=10.0, gt=0)
    budget_webhook_max_attempts: int = Field(default=12, ge=1, le=1000)
    # How often the budget feed tells gateways the state is still current (also when it did not change).
    budget_feed_heartbeat_s: float = Field(default=5.0, gt=0)

    # The HTTP side behind a reverse proxy: the path prefix it is published under (e.g. /chargeback),
    # and the proxies whose X-Forwarded-For/-Proto are believed (comma-separated addresses, or *).
    http_root_path: str = Field(default="", pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    http_trusted_proxies: str = "127.0.0.1"

    # The console (console/, docs/console.md): accounts file, sessions, optional OpenID Connect.
    console_enabled: bool = True
    console_users_path: str = "./var/console-users.yaml"
    # Signs session cookies; give every aggregator behind one URL the same. Unset: a random key kept beside the users file.
    console_session_secret: SecretStr | None = None
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Plain HTTP is accepted from loopback clients only (the cookie never leaves the machine); true lifts that.
    console_allow_insecure_http: bool = False
    console_oidc_issuer: str = ""
    console_oidc_client_id: str = ""
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_scopes: str = "openid email profile"
    console_oidc_groups_claim: str = "groups"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
        return settings_sources(settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings)

    @field_validator("auth_token", "sql_token", "admin_token", "sql_store_dsn", "console_session_secret", "console_oidc_client_secret",
                     mode="before")  # fmt: skip
    @classmethod
    def _empty_token_is_unset(cls, value: object) -> object:
        # An empty variable means "not configured" everywhere, never "the empty token".
        return None if value in ("", b"") else value

    @field_validator("budget_webhooks", mode="before")
    @classmethod
    def _webhooks_json(cls, value: object) -> object:
        # From CHARGEBACK_BUDGET_WEBHOOKS_FILE the JSON arrives as text (webhook URLs are secrets: secret_env.py).
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("budget_webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, BudgetWebhook]) -> dict[str, BudgetWebhook]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", name):
                raise ValueError(f"webhook name {name!r}: letters, digits, . _ - (at most 64)")
        return value

    @model_validator(mode="after")
    def _one_token_per_role(self) -> AggregatorSettings:
        secrets = {name: getattr(self, name) for name in ROLE_TOKENS}
        equal = equal_role_tokens({name: secret.get_secret_value() if secret else None for name, secret in secrets.items()})
        if equal:
            first, second = equal[0]
            raise ValueError(f"{variable(first)} and {variable(second)} are equal: gateways, analysts and admins each need a token "
                             "of their own, or one leaked token opens all three doors")  # fmt: skip
        return self

    @field_validator("grpc_listen", "http_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value
