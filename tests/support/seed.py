"""Seeding the embedded store with realistic usage, through the real Writer, pricer and rollups.

Reusable by any test:

    with seeded_store(tmp_path) as seed:
        seed.insert([usage_event(team="payments", ...), ...])
        seed.build_rollups()
        ... seed.store / seed.runner ...

Events are real ``UsageEvent`` protos as the plugin sends them (UUIDv7 ids,
identity sources, provider usage with cached and reasoning subsets). They go
through ``Writer`` with the ``Pricer`` as its enrich hook and the rollup
maintainer as its after-insert hook: exactly the aggregator's ingest path,
minus gRPC.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ai_chargeback_aggregator.analytics.reports.runner import LocalRunner
from ai_chargeback_aggregator.ingest.admission import Admitted
from ai_chargeback_aggregator.ingest.rows import events_to_columns, extra_columns, key_columns, price_columns
from ai_chargeback_aggregator.ingest.writer import Writer
from ai_chargeback_aggregator.pricing.override_store import save_overrides
from ai_chargeback_aggregator.pricing.overrides import Override, parse_records
from ai_chargeback_aggregator.pricing.pricer import Pricer
from ai_chargeback_aggregator.rollups.maintainer import RollupMaintainer
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_plugin.ids import uuid7
from ai_chargeback_proto import pb

_batch_ids = itertools.count(1)

STORE_WAIT_S = 30.0

# (provider, api family, requested model, served model): what real traffic names.
MODELS: tuple[tuple[str, str, str, str], ...] = (
    ("openai", "openai.chat", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "openai.chat", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "openai.responses", "o3", "o3-2025-04-16"),
    ("anthropic", "anthropic.messages", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("anthropic", "anthropic.messages", "claude-haiku-4-5", "claude-haiku-4-5-20251001"),
)
TENANTS = ("acme", "globex")
TEAMS = ("payments", "search", "support", "unattributed")  # what the plugin records when no team resolves
APPS = ("checkout", "ranker", "helpdesk", "batch-jobs")
CONSUMERS = (("c-0001", "alice-svc"), ("c-0002", "bob-svc"), ("c-0003", "carol-svc"))
ROUTES = (("r-openai", "openai-chat"), ("r-anthropic", "anthropic-messages"))


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def recent_day(days_ago: int) -> date:
    """A UTC day inside the accepted window (validation takes 35 days back)."""
    return (datetime.now(UTC) - timedelta(days=days_ago)).date()


def usage_event(at: datetime | None = None, **overrides: Any) -> pb.UsageEvent:
    """One event with plugin-realistic fields; any field can be overridden."""
    at = at or datetime.now(UTC) - timedelta(minutes=5)
    started_ms = int(at.timestamp() * 1000)
    team = str(overrides.get("team", "payments"))
    fields: dict[str, Any] = dict(  # noqa: C408 - keyword form reads like the proto
        event_id=uuid7(started_ms), kong_request_id=f"req-{random.getrandbits(48):012x}",
        started_at_unix_ms=started_ms, observed_at_unix_ms=started_ms + 850, gateway_node="kong-1",
        tenant="acme", tenant_source=pb.IDENTITY_SOURCE_CONSUMER,
        team=team, team_source=pb.IDENTITY_SOURCE_NONE if team == "unattributed" else pb.IDENTITY_SOURCE_CONSUMER,
        unattributed_reason="no-team-tag" if team == "unattributed" else "",
        app="checkout", app_source=pb.IDENTITY_SOURCE_ROUTE_TAG,
        consumer_id="c-0001", consumer_username="alice-svc", credential_fingerprint="hmac:3f2a",
        route_id="r-openai", route_name="openai-chat", service_id="s-openai", service_name="openai",
        provider="openai", api_family="openai.chat", requested_model="gpt-4o-mini", served_model="gpt-4o-mini-2024-07-18",
        input_tokens=1200, cached_input_tokens=200, cache_write_input_tokens=0, output_tokens=300, reasoning_tokens=0,
        usage_source=pb.USAGE_SOURCE_PROVIDER, streaming=False, service_tier="default",
        latency_total_ms=900, latency_upstream_ms=850, latency_gateway_ms=50, http_status=200, upstream_tries=1,
        policy_outcome=pb.POLICY_OUTCOME_ALLOWED,
    )  # fmt: skip
    fields.update(overrides)
    return pb.UsageEvent(**fields)


def random_events(count: int, *, first: date, days: int, rng: random.Random | None = None) -> list[pb.UsageEvent]:
    """A realistic mix over ``days`` days starting ``first``: models, teams (some unattributed), caching, reasoning."""
    rng = rng or random.Random(7)
    events = []
    for _ in range(count):
        provider, family, requested, served = rng.choice(MODELS)
        consumer_id, username = rng.choice(CONSUMERS)
        route_id, route_name = ROUTES[0] if provider == "openai" else ROUTES[1]
        at = day_start(first) + timedelta(seconds=rng.randrange(days * 86400))
        input_tokens = rng.randrange(50, 20_000)
        cached = rng.choice((0, 0, input_tokens // 2))
        cache_write = rng.choice((0, 0, (input_tokens - cached) // 4)) if provider == "anthropic" else 0
        output_tokens = rng.randrange(1, 4000)
        reasoning = rng.randrange(0, output_tokens) if requested == "o3" else 0
        events.append(
            usage_event(
                at, tenant=rng.choice(TENANTS), team=rng.choice(TEAMS), app=rng.choice(APPS), consumer_id=consumer_id,
                consumer_username=username, route_id=route_id, route_name=route_name, provider=provider,
                api_family=family, requested_model=requested, served_model=served, input_tokens=input_tokens,
                cached_input_tokens=cached, cache_write_input_tokens=cache_write, output_tokens=output_tokens,
                reasoning_tokens=reasoning, service_tier=rng.choice(("default", "default", "default", "batch", "priority")),
            )
        )
    return events


def priced_event_columns(pricer: Pricer, events: Sequence[pb.UsageEvent], sender_id: str) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The table's columns for events, priced as the writer prices them, and the key columns
    the pricer and the rollups took (for rows written around the writer)."""
    keys = price_columns(key_columns(events))
    columns = events_to_columns(events, [sender_id] * len(events), int(time.time() * 1000))
    columns.update(extra_columns(pricer.enrich(keys)))
    return columns, keys


@dataclass
class Seed:
    store: Store
    pricer: Pricer
    maintainer: RollupMaintainer
    writer: Writer
    runner: LocalRunner
    _others: list[Store] = field(default_factory=list)

    def insert(self, events: Sequence[pb.UsageEvent], *, sender_id: str = "kong-1") -> int:
        """Store events through the Writer (which drops ids it stored recently); returns how many it stored."""
        ticket = self.writer.submit(admitted_as_is(events, sender_id))
        if not ticket.wait(STORE_WAIT_S):
            raise TimeoutError("writer did not store the events")
        return ticket.outcome.stored

    def insert_again(self, events: Sequence[pb.UsageEvent], *, sender_id: str = "kong-2") -> None:
        """Deliver events a second time past the writer's memory of ids, as a second aggregator
        (or one whose memory expired) would: same pricer and rollup hooks, straight into the store."""
        columns, keys = priced_event_columns(self.pricer, events, sender_id)
        self.store.insert_columns("usage_events", columns)
        self.maintainer.after_insert(keys)

    def load_overrides(self, records: Sequence[dict[str, Any]], *, replace: bool = False) -> list[Override]:
        overrides = parse_records(records, loaded_from="test")
        save_overrides(self.store, overrides, replace=replace)
        self.pricer.refresh(self.store)
        return overrides

    def build_rollups(self) -> None:
        self.maintainer.reconcile()
        self.maintainer.run_once(force=True)

    def close(self) -> None:
        self.writer.stop()
        for store in self._others:
            store.close()
        self.store.close()


def admitted_as_is(events: Sequence[pb.UsageEvent], sender_id: str) -> Admitted:
    """A batch for the writer without the ingest service's validation: seeds reach back
    further than the 35 days a gateway may deliver late."""
    return Admitted.of_valid(f"seed-{next(_batch_ids)}", sender_id, events)


def _writer(store: Store, pricer: Pricer, maintainer: RollupMaintainer) -> Writer:
    writer = Writer(store, flush_interval_ms=5, enrich=pricer.enrich, after_insert=maintainer.after_insert)
    writer.start()
    return writer


def store_dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'store'}"


@contextmanager
def seeded_store(tmp_path: Path, *, settle_s: float = 0.0) -> Iterator[Seed]:
    """A migrated embedded store in tmp_path with the ingest path wired; closed on exit."""
    dsn = store_dsn(tmp_path)
    store = Store(dsn)
    store.migrate()
    maintainer_store = Store(dsn)  # own session, as in the aggregator
    pricer = Pricer()
    maintainer = RollupMaintainer(maintainer_store, mark_store=store, settle_s=settle_s)
    seed = Seed(store, pricer, maintainer, _writer(store, pricer, maintainer), LocalRunner(store), [maintainer_store])
    try:
        yield seed
    finally:
        seed.close()
