"""Shared credentials: one credential used by two teams is found; honest credentials are not."""

from __future__ import annotations

from datetime import timedelta

from ai_chargeback_aggregator.analytics.governance import SharedCredentials
from ai_chargeback_aggregator.analytics.governance.base import sql_parameters
from ai_chargeback_aggregator.store.clickhouse import Store
from ai_chargeback_proto import pb

from .conftest import month_scope, utc
from .seeding import OPENAI_MINI, at, consumer, event, every, insert


def seed(store: Store) -> None:
    events = []
    # Honest: one consumer, one team, a few pods.
    for i, when in enumerate(every(at("2025-03-03", 9), 40, timedelta(minutes=5))):
        events.append(event(when, **consumer("checkout-svc", "payments"), **OPENAI_MINI, client_ip=f"10.0.0.{i % 3}"))
    # Shared: the build bot's key is used by payments and by search (teams via a trusted header).
    for when in every(at("2025-03-04", 10), 30, timedelta(minutes=2)):
        events.append(event(when, **consumer("build-bot", "payments"), **OPENAI_MINI))
    for when in every(at("2025-03-10", 15), 20, timedelta(minutes=2)):
        events.append(event(when, **{**consumer("build-bot", "search"), "team_source": pb.IDENTITY_SOURCE_HEADER}, **OPENAI_MINI))
    # Spread: one consumer, one team, but 60 client IPs.
    for i, when in enumerate(every(at("2025-03-05", 8), 60, timedelta(minutes=1))):
        events.append(event(when, **consumer("mobile-app", "growth"), **OPENAI_MINI, client_ip=f"198.51.100.{i}"))
    insert(store, events)


def test_renders_bound_parameters() -> None:
    sql, params = SharedCredentials(month_scope(), max_client_ips=10).render()
    assert set(params) == sql_parameters(sql)
    assert {k: params[k] for k in ("max_teams", "max_apps", "max_tenants", "max_client_ips", "only_flagged")} == {
        "max_teams": 1, "max_apps": 1, "max_tenants": 1, "max_client_ips": 10, "only_flagged": 1,
    }  # fmt: skip


def test_credential_shared_by_two_teams(store: Store) -> None:
    seed(store)
    result = SharedCredentials(month_scope()).run(store)
    assert not result.verdict.ok
    found = {(r["kind"], r["identity"]): r for r in result.rows}
    assert set(found) == {("credential", "fp-build-bot"), ("consumer", "c-build-bot"),
                          ("credential", "fp-mobile-app"), ("consumer", "c-mobile-app")}  # fmt: skip
    bot = found[("credential", "fp-build-bot")]
    assert bot["consumer"] == "build-bot"
    assert (bot["teams"], bot["team_list"], bot["requests"]) == (2, ["payments", "search"], 50)
    assert bot["reasons"] == ["teams 2 > 1"]
    assert bot["first_seen"] == utc("2025-03-04 10:00:00")
    assert bot["last_seen"] == utc("2025-03-10 15:38:00")
    mobile = found[("credential", "fp-mobile-app")]
    assert (mobile["teams"], mobile["client_ips"], mobile["reasons"]) == (1, 60, ["client IPs 60 > 50"])


def test_limits_are_configurable(store: Store) -> None:
    seed(store)
    relaxed = SharedCredentials(month_scope(), max_teams=2, max_client_ips=100).run(store)
    assert relaxed.rows == () and relaxed.verdict.ok
    everything = SharedCredentials(month_scope(), only_flagged=False).run(store)
    assert {r["identity"] for r in everything.rows if not r["flagged"]} == {"fp-checkout-svc", "c-checkout-svc"}
