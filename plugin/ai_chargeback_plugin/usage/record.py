"""The normalized usage record every provider adapter produces.

One rule, applied by every adapter exactly once:

* ``input_tokens`` counts *all* prompt-side tokens, including cache reads and
  cache writes. ``cached_input_tokens`` and ``cache_write_input_tokens`` are
  subsets of it, so they are never added to it again downstream.
* ``output_tokens`` counts *all* completion-side tokens, including reasoning.
  ``reasoning_tokens`` is a subset of it.

``None`` means "the provider did not say"; ``0`` means "the provider said zero".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class UsageSource(str, enum.Enum):
    PROVIDER = "provider"
    KONG_AI_PROXY = "kong-ai-proxy"
    ESTIMATED = "estimated"
    NONE = "none"


_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class UsageRecord:
    source: UsageSource
    provider: str = ""
    api_family: str = ""
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    # A read-only mapping. default_factory, not default: dataclasses rejects an
    # unhashable default (mappingproxy) as "mutable" and the module would not import.
    billable_extras: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    served_model: str = ""
    service_tier: str = ""
    streaming: bool = False
    # Why the count is missing, estimated or partial ("" when exact and whole):
    # e.g. "malformed-json", "stream-truncated", "body-too-large".
    note: str = ""

    @classmethod
    def none(cls, reason: str, *, provider: str = "", api_family: str = "", streaming: bool = False) -> UsageRecord:
        return cls(UsageSource.NONE, provider=provider, api_family=api_family, streaming=streaming, note=reason)

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)
