"""The pricer: rates for every event at ingest, resolved once per price key and cached.

A price key is (provider, model, service tier, tenant, UTC day): overrides are
per tenant and effective by day, catalog prices by day (and, for a handful of
off-peak models, by half-hour, which the Schedule carries). The writer calls
``enrich`` with a flush's key columns; it returns each event's Price, whose
fields are the integer rate and provenance columns (rates.PRICE_COLUMNS), and
ClickHouse computes the Decimal costs.

Overrides come from the store (``refresh``); the aggregator refreshes them
periodically and right after ``prices load``. A refresh that changes them
drops the cache, so the next batch is priced with the new overrides.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from ..periods import utc_from_ms
from ..store.clickhouse import Store
from .catalog import CatalogMatch, TokenTiers, catalog_version, load, lookup, normalize_tier
from .override_store import list_overrides
from .overrides import Override, best
from .rates import CATALOG_SOURCE, NOT_BILLED_OUTCOMES, Price, Rates, Schedule, Tiers

log = logging.getLogger(__name__)
NOT_BILLED = Price.not_billed()

CACHE_CAPACITY = 100_000  # price keys; a day's worth for a large fleet, cleared when exceeded
CATALOG_CACHE_CAPACITY = 8192

PriceKey = tuple[str, str, str, str, date]
_DAY_MS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)


@lru_cache(maxsize=CATALOG_CACHE_CAPACITY)
def _catalog(provider: str, model: str, tier: str, day: date) -> CatalogMatch | None:
    return lookup(provider, model, tier, day)


@dataclass(frozen=True, slots=True)
class _State:
    overrides: tuple[Override, ...]
    digest: str
    cache: dict[PriceKey, Schedule]


def overrides_digest(overrides: Sequence[Override]) -> str:
    """Identifies a set of overrides: recorded with every reprice run."""
    text = "\n".join(sorted(repr(o) for o in overrides))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Pricer:
    def __init__(self, overrides: Sequence[Override] = ()) -> None:
        self._state = _State(tuple(overrides), overrides_digest(overrides), {})
        self._lock = threading.Lock()

    # -- overrides ----------------------------------------------------------
    @property
    def overrides(self) -> tuple[Override, ...]:
        return self._state.overrides

    @property
    def digest(self) -> str:
        return self._state.digest

    def set_overrides(self, overrides: Sequence[Override]) -> bool:
        """Swap in a new override set; True (and an empty cache) when it changed."""
        digest = overrides_digest(overrides)
        with self._lock:
            if digest == self._state.digest:
                return False
            self._state = _State(tuple(overrides), digest, {})
        log.info("price overrides changed: %d active (digest %s)", len(overrides), digest)
        return True

    def refresh(self, store: Store) -> bool:
        return self.set_overrides(list_overrides(store))

    @staticmethod
    def load_catalog() -> None:
        load()

    # -- resolution -----------------------------------------------------------
    def schedule(self, provider: str, model: str, service_tier: str, tenant: str, day: date) -> Schedule:
        state = self._state
        key = (provider, model, service_tier, tenant, day)
        found = state.cache.get(key)
        if found is None:
            found = resolve(state.overrides, *key)
            if len(state.cache) >= CACHE_CAPACITY:
                state.cache.clear()
            state.cache[key] = found
        return found

    def enrich(self, columns: dict[str, list[Any]]) -> list[Price]:
        """Writer hook: each event's price, from one flush's ``rows.KEY_COLUMNS``. Events of one
        key share its Price instance (the insert sends each distinct one once)."""
        state = self._state
        cache = state.cache
        prices: list[Price] = []
        append = prices.append
        not_billed = NOT_BILLED
        days: dict[int, date] = {}
        for provider, served, requested, tier, tenant, started_ms, input_tokens, outcome in zip(
            columns["provider"], columns["served_model"], columns["requested_model"], columns["service_tier"],
            columns["tenant"], columns["started_ms"], columns["input_tokens"], columns["policy_outcome"],
        ):  # fmt: skip
            if outcome in NOT_BILLED_OUTCOMES:
                append(not_billed)
                continue
            day_number = started_ms // _DAY_MS
            day = days.get(day_number)
            if day is None:
                day = days[day_number] = _EPOCH_DAY + timedelta(days=day_number)
            key = (provider, served or requested, tier, tenant, day)
            schedule = cache.get(key)
            if schedule is None:
                schedule = self.schedule(*key)
            flat = schedule.flat
            append(flat if flat is not None else schedule.pick(utc_from_ms(started_ms), input_tokens))
        return prices


def resolve(overrides: Sequence[Override], provider: str, model: str, service_tier: str, tenant: str, day: date) -> Schedule:
    """Every price a key can take (see the overrides module for precedence)."""
    provider_n, model_n, tier = provider.strip().lower(), model.strip().lower(), normalize_tier(service_tier)
    list_override = best(overrides, "list", provider_n, model_n, tenant, tier, day)
    contract = best(overrides, "contract", provider_n, model_n, tenant, tier, day)

    list_slots: tuple[TokenTiers, ...] | None = None
    list_source = version = ""
    model_id = model_n
    if list_override is not None:
        list_slots, list_source = (((0, list_override.rates()),),), list_override.source
    else:
        match = _catalog(provider_n, model_n, tier, day)
        if match is not None:
            list_slots, list_source, version, model_id = match.slots, CATALOG_SOURCE, catalog_version(), match.model_id

    if contract is not None and contract.has_rates:
        contract_slots: tuple[TokenTiers, ...] | None = (((0, contract.rates()),),)
    elif contract is not None and list_slots is not None:
        factor = contract.discount_factor()
        contract_slots = tuple(tuple((f, r.scaled(factor)) for f, r in slot) for slot in list_slots)
    elif contract is not None:
        contract_slots = None  # a discount off an unknown price is still unknown
    else:
        contract_slots = list_slots

    if contract_slots is None:
        return Schedule.of((((0, Price.unpriced(tier=tier, model_id=model_id)),),))
    source = contract.source if contract is not None else list_source
    if list_slots is None:  # a private model priced only by contract: list = contract
        list_slots, list_source = contract_slots, source
    slots = _merge_slots(list_slots, contract_slots)
    return Schedule.of(
        tuple(
            tuple(
                (tier_from, Price.of(rates, list_rates, tier=tier, source=source, list_source=list_source, catalog_version=version, model_id=model_id))
                for tier_from, rates, list_rates in slot
            )
            for slot in slots
        )
    )


def _merge_slots(list_slots: tuple[TokenTiers, ...], contract_slots: tuple[TokenTiers, ...]) -> list[list[tuple[int, Rates, Rates]]]:
    """Align list and contract schedules on common slots and token-tier boundaries."""
    count = max(len(list_slots), len(contract_slots))
    merged = []
    for slot in range(count):
        lst = list_slots[slot if len(list_slots) > 1 else 0]
        con = contract_slots[slot if len(contract_slots) > 1 else 0]
        bounds = sorted({f for f, _ in lst} | {f for f, _ in con})
        merged.append([(f, _rates_at(con, f), _rates_at(lst, f)) for f in bounds])
    return merged


def _rates_at(tiers: TokenTiers, tier_from: int) -> Rates:
    chosen = tiers[0][1]
    for start, rates in tiers[1:]:
        if tier_from < start:
            break
        chosen = rates
    return chosen


def price_rows(schedule: Schedule) -> list[tuple[int, int, Price]]:
    """(slot, tier_from, price) for every price a schedule holds: reprice joins on these."""
    slots: tuple[Tiers, ...] = schedule.slots
    return [(slot, tier_from, price) for slot, tiers in enumerate(slots) for tier_from, price in tiers]
