"""Chargeback arithmetic: exact Decimal amounts, then cents that add up exactly, everywhere.

Costs arrive exact (Decimal(38, 18)). Rounding happens once per money column,
with the largest-remainder method against the column's exact total rounded
half up, so a column always sums to its total to the cent. Unattributed
usage is then moved in cents: its line's rounded cost and fee go to the owner,
or are split pro rata (largest remainder again) over the attributed lines.
So, with no exception:

* each column (model cost, platform fee, allocated in, total) sums to its total;
* the model-cost total equals the rounded contracted cost of all usage (the
  same number showback and the FOCUS export give), the fee total the fee policy;
* a line's total is its model cost plus its platform fee, and what it received
  from unattributed usage is part of those.

The exact (unrounded) allocation is kept beside the cents for anyone checking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext

CENT = Decimal("0.01")
PRECISION = 60  # digits for share arithmetic: far past any cost's 38


def to_cents(amount: Decimal) -> int:
    """Half up, as invoices round."""
    return int((amount / CENT).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def largest_remainder(amounts: Sequence[Decimal], total_cents: int) -> list[int]:
    """Cents per amount, summing to total_cents: floor each, hand the rest out by largest remainder.

    Ties go to the earlier amount, so the result is deterministic for a given order.
    """
    if any(a < 0 for a in amounts):
        raise ValueError("amounts must not be negative")
    with localcontext() as ctx:
        ctx.prec = PRECISION
        floors = [int((a / CENT).to_integral_value(rounding=ROUND_FLOOR)) for a in amounts]
        remainders = [a / CENT - f for a, f in zip(amounts, floors)]
    missing = total_cents - sum(floors)
    if not 0 <= missing <= len(amounts):
        raise ValueError(f"cannot distribute {total_cents} cents over amounts summing to {sum(amounts)}")
    order = sorted(range(len(amounts)), key=lambda i: (-remainders[i], i))
    for i in order[:missing]:
        floors[i] += 1
    return floors


@dataclass
class Line:
    """One report line. ``cost`` is its own contracted model cost, ``fee`` its own platform fee (exact)."""

    key: str
    label: str
    events: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost: Decimal = Decimal(0)
    list_cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    unpriced_events: int = 0
    unpriced_tokens: int = 0
    unpriced_models: list[str] = field(default_factory=list)
    # usage the plugin estimated (with its contracted and list cost), and answered
    # requests it could not measure at all; never moved by allocate()
    estimated_events: int = 0
    estimated_cost: Decimal = Decimal(0)
    estimated_list_cost: Decimal = Decimal(0)
    unmeasured_events: int = 0
    # set by allocate(): this line's share of the unattributed line's charges (0..1),
    # and on the unattributed line itself, that it gave them away
    share: Decimal = Decimal(0)
    gives: bool = False
    note: str = ""

    def allocated_exact(self, source: Line | None) -> tuple[Decimal, Decimal]:
        """(cost, fee) received (or, on the source, given: negative), exact."""
        if source is None:
            return Decimal(0), Decimal(0)
        if self.gives:
            return -self.cost, -self.fee
        with localcontext() as ctx:
            ctx.prec = PRECISION
            return source.cost * self.share, source.fee * self.share


@dataclass
class Cents:
    model_cost: int
    platform_fee: int
    allocated_in: int
    total: int


def allocate(lines: list[Line], *, strategy: str, owner: str = "", unattributed_key: str = "") -> list[Line]:
    """Decide who takes the unattributed line's charges; returns the lines (the owner's added if new)."""
    source = next((line for line in lines if line.key == unattributed_key), None)
    if source is None or strategy == "keep" or (source.cost == 0 and source.fee == 0):
        return lines
    if strategy == "owner":
        target = next((line for line in lines if line.key == owner), None)
        if target is None:
            target = Line(key=owner, label=owner, note="owner of unattributed usage")
            lines.append(target)
        target.share, source.gives, source.note = Decimal(1), True, f"allocated to {owner}"
    elif strategy == "pro_rata":
        others = [line for line in lines if line is not source]
        weights, basis = [line.cost for line in others], "cost"
        if sum(weights) == 0:
            weights, basis = [Decimal(line.events) for line in others], "events"
        total = sum(weights, Decimal(0))
        if not others or total == 0:
            source.note = "kept: nothing attributed to split it over"
            return lines
        with localcontext() as ctx:
            ctx.prec = PRECISION
            for line, weight in zip(others, weights):
                line.share = weight / total
        source.gives, source.note = True, f"allocated pro rata by {basis}"
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return lines


def round_lines(lines: Sequence[Line]) -> tuple[list[Cents], Cents]:
    """Cents per line and in total (see the module docstring for what adds up)."""
    own_cost = _round_column([line.cost for line in lines])
    own_fee = _round_column([line.fee for line in lines])
    source = next((i for i, line in enumerate(lines) if line.gives), None)
    received_cost = [0] * len(lines)
    received_fee = [0] * len(lines)
    if source is not None:
        for own, received in ((own_cost, received_cost), (own_fee, received_fee)):
            pool = own[source]
            with localcontext() as ctx:
                ctx.prec = PRECISION
                split = largest_remainder([Decimal(pool) * CENT * line.share for line in lines], pool)
            for i, c in enumerate(split):
                received[i] = c
            own[source] = 0  # given away whole
    per_line = []
    for i in range(len(lines)):
        cost, fee = own_cost[i] + received_cost[i], own_fee[i] + received_fee[i]
        per_line.append(Cents(cost, fee, received_cost[i] + received_fee[i], cost + fee))
    total = Cents(
        sum(c.model_cost for c in per_line),
        sum(c.platform_fee for c in per_line),
        sum(c.allocated_in for c in per_line),
        sum(c.total for c in per_line),
    )
    return per_line, total


def _round_column(amounts: Sequence[Decimal]) -> list[int]:
    return largest_remainder(amounts, to_cents(sum(amounts, Decimal(0))))


def round_column(amounts: Sequence[Decimal]) -> tuple[list[int], int]:
    """One column to cents that sum to its rounded exact total (showback's list cost)."""
    total = to_cents(sum(amounts, Decimal(0)))
    return largest_remainder(amounts, total), total
