"""The public price catalog: genai-prices' bundled data, offline, as integer rates.

genai-prices answers "what does this usage cost"; we need "what are the rates",
resolved once per (provider, model, tier, day) and applied by ClickHouse to
every row. This module reads the same ModelPrice the library's calc_price
would use (same model matching, same service-tier / batch variants, same
dated and time-of-day prices) and keeps the library's rules for components
without a price of their own: cached and cache-write input fall back to the
input rate, reasoning to the output rate (its leaf decomposition does exactly
that). A test holds our rates to calc_price's totals.

Unknown provider or model -> None: the caller stores the row as UNPRICED.
We never guess a provider from the model name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices, TimeOfDateConstraint

from .rates import SLOT_SECONDS, SLOTS_PER_DAY, Rates, to_e12

# Tiers as our events name them -> genai-prices price context.
DEFAULT_TIER = "default"
_DEFAULT_ALIASES = frozenset({"", "default", "auto", "standard", "on_demand", "on-demand"})
_BATCH_CONTEXT = {"processing": "batch"}
REQUESTS_PER_KCOUNT = Decimal(1000)

TokenTiers = tuple[tuple[int, Rates], ...]


@cache
def catalog_version() -> str:
    """Which catalog priced a row: the library version pins its bundled data."""
    return f"genai-prices {genai_prices.__version__}"


def load() -> None:
    """Read the bundled catalog now. The library reads it on first use (~0.15 s, once per process):
    left to the first flush after a start, the one a reconnecting fleet's backlog waits on."""
    data_snapshot.get_snapshot()


def normalize_tier(service_tier: str) -> str:
    tier = service_tier.strip().lower()
    return DEFAULT_TIER if tier in _DEFAULT_ALIASES else tier


def price_context(tier: str) -> dict[str, str] | None:
    if tier == DEFAULT_TIER:
        return None
    if tier == "batch":
        return dict(_BATCH_CONTEXT)
    return {"service_tier": tier}


@dataclass(frozen=True, slots=True)
class CatalogMatch:
    provider_id: str
    model_id: str
    # One TokenTiers per half-hour slot when prices vary by time of day, else one.
    slots: tuple[TokenTiers, ...]


def lookup(provider: str, model: str, tier: str, day: date) -> CatalogMatch | None:
    """List rates for one (provider, model, normalized tier, UTC day), or None when unknown."""
    if not provider or not model:
        return None
    snapshot = data_snapshot.get_snapshot()
    found = data_snapshot.find_provider_by_id(snapshot.providers, provider)
    if found is None:
        return None
    try:
        found, info = snapshot.find_provider_model(model, found, None, None)
    except LookupError:
        return None
    context = price_context(tier)
    # calc_price ignores the context for models borrowed from a fallback provider; so do we.
    if context and not any(m is info for m in found.models):
        context = None
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    moments = [midnight + timedelta(seconds=s * SLOT_SECONDS) for s in range(SLOTS_PER_DAY)] if _time_of_day(info) else [midnight]
    slots: list[TokenTiers] = []
    for moment in moments:
        tiers = token_tiers(info.get_prices(moment, context))
        if tiers is None:
            return None
        slots.append(tiers)
    return CatalogMatch(found.id, info.id, tuple(slots))


def token_tiers(price: ModelPrice) -> TokenTiers | None:
    """Rates by input-size tier; None when the model has no input token price."""
    base_input = price.input_mtok
    if base_input is None:
        return None
    fields = (base_input, price.cache_read_mtok, price.cache_write_mtok, price.output_mtok, price.output_reasoning_mtok)
    starts = sorted({t.start for v in fields if isinstance(v, TieredPrices) for t in v.tiers})
    # genai-prices: a tier applies when total input > start, i.e. input >= start + 1.
    result: list[tuple[int, Rates]] = []
    for tier_from in [0, *(s + 1 for s in starts)]:
        input_, cached, cache_write, output, reasoning = (_at(v, tier_from) for v in fields)
        request = _at(price.requests_kcount, tier_from)
        assert input_ is not None
        rates = Rates(
            input=to_e12(input_),
            cached_input=to_e12(cached if cached is not None else input_),
            cache_write=to_e12(cache_write if cache_write is not None else input_),
            # embedding models have no output price and never output tokens
            output=to_e12(output if output is not None else Decimal(0)),
            reasoning=to_e12(reasoning if reasoning is not None else (output if output is not None else Decimal(0))),
            request=to_e12(request / REQUESTS_PER_KCOUNT) if request is not None else 0,
        )
        if not result or result[-1][1] != rates:
            result.append((tier_from, rates))
    return tuple(result)


def _at(value: Decimal | TieredPrices | None, input_tokens: int) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    chosen = value.base
    for tier in reversed(value.tiers):
        if input_tokens > tier.start:
            chosen = tier.price
            break
    return chosen


def _time_of_day(info: ModelInfo) -> bool:
    constraints = [p.constraint for p in info.prices] if isinstance(info.prices, list) else []
    constraints += [v.constraint for v in info.price_variants or ()]
    return any(isinstance(c, TimeOfDateConstraint) for c in constraints)

