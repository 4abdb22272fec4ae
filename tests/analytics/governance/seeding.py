"""Seeding the embedded store with chargeback.v1 UsageEvents for governance scenarios.

Events are built as the plugin builds them (protobuf UsageEvent), turned into
columns by the aggregator's own ``events_to_columns`` and inserted through
``Store.insert_columns`` with explicit contract rates, so every cost in a
scenario is known in advance (USD per 1M tokens below).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from support.aggregator_fixtures import make_event

from ai_chargeback_aggregator.ingest.rows import events_to_columns
from ai_chargeback_aggregator.pricing.rates import (
    LIST_RATE_COLUMNS,
    RATE_COLUMNS,
    to_e12,
)
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_plugin.ids import uuid7
from ai_chargeback_proto import pb

UTC = UTC


@dataclass(frozen=True)
class Rate:
    """USD per 1M tokens: input (uncached), cached input, cache write, output."""

    input: Decimal
    cached: Decimal
    cache_write: Decimal
    output: Decimal

    def cost(self, *, input_tokens: int, cached: int = 0, cache_write: int = 0, output: int = 0) -> Decimal:
        uncached = input_tokens - cached - cache_write
        return (uncached * self.input + cached * self.cached + cache_write * self.cache_write + output * self.output) / 1_000_000


RATES: Mapping[str, Rate] = {
    "gpt-4o-mini-2024-07-18": Rate(Decimal("0.15"), Decimal("0.075"), Decimal(0), Decimal("0.60")),
    "gpt-4.1-2025-04-14": Rate(Decimal(2), Decimal("0.50"), Decimal(0), Decimal(8)),
    "claude-sonnet-4-20250514": Rate(Decimal(3), Decimal("0.30"), Decimal("3.75"), Decimal(15)),
    "claude-opus-4-1-20250805": Rate(Decimal(15), Decimal("1.50"), Decimal("18.75"), Decimal(75)),
}

_request_ids = itertools.count(1)


def at(day: str, hh: int = 12, mm: int = 0, ss: int = 0, ms: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hh, minute=mm, second=ss, microsecond=ms * 1000, tzinfo=UTC)


def event(when: datetime, **fields: Any) -> pb.UsageEvent:
    """A plugin-shaped event at ``when``; identity defaults to an authenticated consumer."""
    ms = int(when.timestamp() * 1000)
    base: dict[str, Any] = {
        "event_id": uuid7(ms), "kong_request_id": f"req-{next(_request_ids)}", "started_at_unix_ms": ms,
        "observed_at_unix_ms": ms + 250, "consumer_id": "c-checkout", "consumer_username": "checkout-svc",
        "credential_fingerprint": "fp-checkout", "client_ip": "10.0.0.1", "route_name": "chat", "service_name": "openai",
        "cached_input_tokens": 0,
    }  # fmt: skip
    base.update(fields)
    return make_event(**base)


def insert(store: Store, events: Sequence[pb.UsageEvent], *, unpriced_models: Iterable[str] = ()) -> None:
    """Insert events with explicit contract (= list) rates; unknown or listed models stay unpriced."""
    skip = set(unpriced_models)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    columns = events_to_columns(events, ["seed"] * len(events), now_ms)
    extra: dict[str, list[Any]] = {name: [] for name in (*RATE_COLUMNS, *LIST_RATE_COLUMNS, "pricing_status")}
    for e in events:
        model = e.served_model or e.requested_model
        rate = None if model in skip else RATES.get(model)
        values = (0, 0, 0, 0, 0, 0) if rate is None else (
            to_e12(rate.input), to_e12(rate.cached), to_e12(rate.cache_write), to_e12(rate.output), to_e12(rate.output), 0,
        )  # fmt: skip
        for name, value in zip(RATE_COLUMNS, values):
            extra[name].append(value)
        for name, value in zip(LIST_RATE_COLUMNS, values):
            extra[name].append(value)
        extra["pricing_status"].append("unpriced" if rate is None else "priced")
    columns.update(extra)
    store.insert_columns("usage_events", columns)


def every(start: datetime, count: int, step: timedelta) -> list[datetime]:
    return [start + i * step for i in range(count)]


def consumer(name: str, team: str, app: str | None = None, *, tenant: str = "acme", fingerprint: str | None = None) -> dict[str, Any]:
    """Identity fields of an authenticated consumer tagged with its team (the accountable kind)."""
    return {
        "tenant": tenant, "tenant_source": pb.IDENTITY_SOURCE_CONSUMER, "team": team, "team_source": pb.IDENTITY_SOURCE_CONSUMER,
        "app": app or name, "app_source": pb.IDENTITY_SOURCE_CONSUMER, "consumer_id": f"c-{name}", "consumer_username": name,
        "credential_fingerprint": fingerprint or f"fp-{name}",
    }  # fmt: skip


ANONYMOUS: Mapping[str, Any] = {
    "team": "unattributed", "team_source": pb.IDENTITY_SOURCE_NONE, "app": "", "app_source": pb.IDENTITY_SOURCE_NONE,
    "unattributed_reason": "no-authenticated-consumer", "consumer_id": "", "consumer_username": "", "credential_fingerprint": "",
}  # fmt: skip

OPENAI_MINI: Mapping[str, Any] = {
    "provider": "openai", "api_family": "openai.chat", "requested_model": "gpt-4o-mini", "served_model": "gpt-4o-mini-2024-07-18",
}  # fmt: skip
SONNET: Mapping[str, Any] = {
    "provider": "anthropic", "api_family": "anthropic.messages", "requested_model": "claude-sonnet-4-0",
    "served_model": "claude-sonnet-4-20250514", "service_name": "anthropic",
}  # fmt: skip
