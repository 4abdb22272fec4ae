"""The gateway's side of a reconciliation: one query, rendered from governance/sql/reconcile_gateway.sql."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

from ..governance.base import DEFAULT_DATABASE, Period, Runner, load_sql, run_query


@dataclass(frozen=True, slots=True)
class GatewayLine:
    day: date
    provider: str
    model: str
    consumer_id: str
    consumer_username: str
    consumer_custom_id: str
    credential_fingerprint: str
    currency: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    output_tokens: int
    cost: Decimal
    unpriced_requests: int
    estimated_requests: int

    @property
    def identities(self) -> tuple[str, str, str]:
        return (self.consumer_id, self.consumer_username, self.consumer_custom_id)


@dataclass(frozen=True, slots=True)
class GatewayUsage:
    period: Period
    providers: tuple[str, ...] = ()
    database: str = DEFAULT_DATABASE
    NAME: ClassVar[str] = "reconcile_gateway"

    def render(self) -> tuple[str, dict[str, Any]]:
        return load_sql(self.NAME), {"db": self.database, **self.period.params(), "providers": list(self.providers)}

    def run(self, runner: Runner) -> list[GatewayLine]:
        sql, params = self.render()
        _, rows = run_query(runner, sql, params)
        return [_line(row) for row in rows]


def _line(row: dict[str, Any]) -> GatewayLine:
    return GatewayLine(
        day=row["day"],
        provider=str(row["provider"]),
        model=str(row["model"]),
        consumer_id=row["consumer_id"],
        consumer_username=row["consumer_username"],
        consumer_custom_id=row["consumer_custom_id"],
        credential_fingerprint=row["credential_fingerprint"],
        currency=str(row["currency"] or "USD").upper(),
        requests=int(row["requests"]),
        input_tokens=int(row["input_sum"]),
        cached_input_tokens=int(row["cached_sum"]),
        cache_write_input_tokens=int(row["cache_write_sum"]),
        output_tokens=int(row["output_sum"]),
        cost=row["cost"] if isinstance(row["cost"], Decimal) else Decimal(str(row["cost"])),
        unpriced_requests=int(row["unpriced_requests"]),
        estimated_requests=int(row["estimated_requests"]),
    )


def lines_total(lines: Sequence[GatewayLine]) -> int:
    return sum(line.input_tokens + line.output_tokens for line in lines)
