"""Resolved prices as the store keeps them: integer rates, exact, plus where they came from.

A rate is USD per 1M tokens x 10^12 (the request fee: USD per request x 10^12),
an int. ClickHouse turns rates into Decimal costs (migration 0002), so the
ingest path never builds a Python Decimal per row. Twelve decimals of a
per-million rate is 10^-18 USD per token: finer than any price list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

RATE_SCALE = 10**12
_QUANTUM = Decimal(1).scaleb(-12)

PRICED = "priced"
UNPRICED = "unpriced"
CATALOG_SOURCE = "catalog"
OVERRIDE_PREFIX = "override:"
# Requests the gateway answered itself (an auth plugin, a rate limit, a budget): no provider
# saw them, so there is nothing to bill and no price to look up. Priced at zero with this
# source, never repriced, and outside the per-request platform fee.
NOT_BILLED_SOURCE = "not-billed:answered-by-gateway"
NOT_BILLED_OUTCOMES: tuple[str, ...] = ("rejected_auth", "rate_limited", "rejected_other", "budget_exceeded", "budget_unverified")

# Half-hour slots: the finest time-of-day boundary in the catalog (off-peak prices).
SLOTS_PER_DAY = 48
SLOT_SECONDS = 24 * 3600 // SLOTS_PER_DAY

# (column suffix, what the rate applies to); the order every rate tuple uses.
COMPONENTS: tuple[str, ...] = ("input", "cached_input", "cache_write", "output", "reasoning", "request")
RATE_COLUMNS: tuple[str, ...] = tuple(f"rate_{c}_e12" for c in COMPONENTS)
LIST_RATE_COLUMNS: tuple[str, ...] = tuple(f"list_rate_{c}_e12" for c in COMPONENTS)
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "pricing_status", "price_tier", "price_source", "list_price_source", "catalog_version", "price_model_id",
)  # fmt: skip
# Every column the pricer adds to an insert, in Price attribute order.
PRICE_COLUMNS: tuple[str, ...] = RATE_COLUMNS + LIST_RATE_COLUMNS + PROVENANCE_COLUMNS


def to_e12(amount: Decimal) -> int:
    """USD (per 1M tokens or per request) -> integer rate; half-even beyond 12 decimals."""
    if amount < 0:
        raise ValueError(f"negative price {amount}")
    return int((amount.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN) * RATE_SCALE).to_integral_exact())


def from_e12(rate: int) -> Decimal:
    return Decimal(rate).scaleb(-12)


@dataclass(frozen=True, slots=True)
class Rates:
    """Six component rates, e12 integers, in COMPONENTS order."""

    input: int
    cached_input: int
    cache_write: int
    output: int
    reasoning: int
    request: int

    def as_tuple(self) -> tuple[int, ...]:
        return (self.input, self.cached_input, self.cache_write, self.output, self.reasoning, self.request)

    def scaled(self, factor: Decimal) -> Rates:
        """Each rate times factor (a discount), rounded half-even to the e12 grid."""
        return Rates(*(to_e12(from_e12(r) * factor) for r in self.as_tuple()))

    @classmethod
    def zero(cls) -> Rates:
        return cls(0, 0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Price:
    """The price of one row: flat attributes because the ingest path reads them per column."""

    rate_input_e12: int
    rate_cached_input_e12: int
    rate_cache_write_e12: int
    rate_output_e12: int
    rate_reasoning_e12: int
    rate_request_e12: int
    list_rate_input_e12: int
    list_rate_cached_input_e12: int
    list_rate_cache_write_e12: int
    list_rate_output_e12: int
    list_rate_reasoning_e12: int
    list_rate_request_e12: int
    pricing_status: str
    price_tier: str
    price_source: str
    list_price_source: str
    catalog_version: str
    price_model_id: str

    @classmethod
    def of(cls, rates: Rates, list_rates: Rates, *, tier: str, source: str, list_source: str, catalog_version: str, model_id: str) -> Price:
        return cls(*rates.as_tuple(), *list_rates.as_tuple(), PRICED, tier, source, list_source, catalog_version, model_id)

    @classmethod
    def unpriced(cls, *, tier: str, model_id: str) -> Price:
        zero = Rates.zero().as_tuple()
        return cls(*zero, *zero, UNPRICED, tier, "", "", "", model_id)

    @classmethod
    def not_billed(cls) -> Price:
        zero = Rates.zero().as_tuple()
        return cls(*zero, *zero, PRICED, "", NOT_BILLED_SOURCE, NOT_BILLED_SOURCE, "", "")

    @property
    def rates(self) -> Rates:
        return Rates(*(getattr(self, c) for c in RATE_COLUMNS))

    @property
    def list_rates(self) -> Rates:
        return Rates(*(getattr(self, c) for c in LIST_RATE_COLUMNS))


# Tiered prices: (tier_from, price) ascending; a row pays the last tier whose
# tier_from <= its input tokens (genai-prices: tier applies when input > start).
Tiers = tuple[tuple[int, Price], ...]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every price one (provider, model, tier, tenant, day) can take.

    ``flat`` is set in the common case (one price all day, no token tiers), so
    the ingest path skips the per-row pick. Otherwise ``slots`` holds one
    Tiers per half-hour slot (a single entry when prices do not vary by time).
    """

    slots: tuple[Tiers, ...]
    flat: Price | None

    @classmethod
    def of(cls, slots: tuple[Tiers, ...]) -> Schedule:
        first = slots[0]
        uniform = all(s == first for s in slots)
        if uniform:
            slots = (first,)
        flat = first[0][1] if uniform and len(first) == 1 else None
        return cls(slots, flat)

    @property
    def time_of_day(self) -> bool:
        return len(self.slots) > 1

    def pick(self, started_at: datetime, input_tokens: int) -> Price:
        if self.flat is not None:
            return self.flat
        tiers = self.slots[slot_of(started_at)] if len(self.slots) > 1 else self.slots[0]
        chosen = tiers[0][1]
        for tier_from, price in tiers[1:]:
            if input_tokens < tier_from:
                break
            chosen = price
        return chosen


def slot_of(moment: datetime) -> int:
    return (moment.hour * 3600 + moment.minute * 60 + moment.second) // SLOT_SECONDS
