"""What every adapter needs to build its record, applying the one rule in one place.

The rule (see ``..record``): ``input_tokens`` includes cache reads and writes,
``output_tokens`` includes reasoning; the cache and reasoning fields are
subsets. Adapters compute totals per their provider's arithmetic and hand them
to :func:`provider_record`, which clamps any subset that exceeds its total
(noting ``inconsistent-counts``) so downstream code can rely on the invariant.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .. import notes
from ..record import UsageRecord, UsageSource

_EMPTY_EXTRAS: Mapping[str, int] = UsageRecord(UsageSource.NONE).billable_extras


def provider_record(
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    cached: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
    extras: Mapping[str, int] | None = None,
    model: str = "",
    tier: str = "",
    note: str = "",
    invalid: bool = False,
) -> UsageRecord:
    """A PROVIDER record, or NONE (note ``no-usage`` unless a reason is given) when neither total is known."""
    if invalid:
        note = notes.join(note, notes.INVALID_COUNT)
    if input_tokens is None and output_tokens is None:
        return UsageRecord(UsageSource.NONE, served_model=model, service_tier=tier, note=notes.join(note or notes.NO_USAGE))
    clamped = False
    if input_tokens is None:
        cached = cache_write = None  # a subset of an unknown total says nothing billable
    else:
        if cached is not None and cached > input_tokens:
            cached, clamped = input_tokens, True
        if cache_write is not None and cache_write > input_tokens - (cached or 0):
            cache_write, clamped = input_tokens - (cached or 0), True
    if output_tokens is None:
        reasoning = None
    elif reasoning is not None and reasoning > output_tokens:
        reasoning, clamped = output_tokens, True
    if clamped:
        note = notes.join(note, notes.INCONSISTENT)
    clean_extras = MappingProxyType({k: v for k, v in extras.items() if v}) if extras else None
    return UsageRecord(
        UsageSource.PROVIDER,
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_input_tokens=cache_write,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        billable_extras=clean_extras or _EMPTY_EXTRAS,
        served_model=model,
        service_tier=tier,
        note=note,
    )


def none_record(note: str, *, model: str = "") -> UsageRecord:
    return UsageRecord(UsageSource.NONE, served_model=model, note=note)
