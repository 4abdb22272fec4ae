"""Chargeback arithmetic: exact Decimal shares, then cents that add up to the total exactly.

Everything is computed exactly first (costs arrive as Decimal(38, 18)); only
the final amounts become cents. Each money column is rounded with the
largest-remainder method against its own exactly-computed total (rounded half
up), so a column always sums to its total to the cent, and a line's total is
the sum of its rounded columns, so lines sum to the grand total too.
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
    """One report line, exact. ``cost`` is the contracted model cost, ``fee`` the platform fee."""

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
    # set by allocate()
    allocated_cost: Decimal = Decimal(0)  # received from unattributed (negative on the line that gave it)
    allocated_fee: Decimal = Decimal(0)
    note: str = ""


@dataclass
class Cents:
    model_cost: int
    platform_fee: int
    allocated_in: int
    total: int


def allocate(lines: list[Line], *, strategy: str, owner: str = "", unattributed_key: str = "") -> list[Line]:
    """Move the unattributed line's cost and fee per the rule; returns the lines (owner line added if new)."""
    source = next((line for line in lines if line.key == unattributed_key), None)
    if source is None or strategy == "keep" or (source.cost == 0 and source.fee == 0):
        return lines
    with localcontext() as ctx:
        ctx.prec = PRECISION
        if strategy == "owner":
            target = next((line for line in lines if line.key == owner), None)
            if target is None:
                target = Line(key=owner, label=owner, note="owner of unattributed usage")
                lines.append(target)
            _move(source, [(target, Decimal(1))])
            source.note = f"allocated to {owner}"
        elif strategy == "pro_rata":
            others = [line for line in lines if line is not source]
            weights = [line.cost for line in others]
            basis = "cost"
            if sum(weights) == 0:
                weights, basis = [Decimal(line.events) for line in others], "events"
            total = sum(weights)
            if not others or total == 0:
                source.note = "kept: nothing attributed to split it over"
                return lines
            _move(source, [(line, w / total) for line, w in zip(others, weights) if w])
            source.note = f"allocated pro rata by {basis}"
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
    return lines


def _move(source: Line, shares: list[tuple[Line, Decimal]]) -> None:
    cost, fee = source.cost + source.allocated_cost, source.fee + source.allocated_fee
    for line, share in shares:
        line.allocated_cost += cost * share
        line.allocated_fee += fee * share
    source.allocated_cost -= cost
    source.allocated_fee -= fee


def round_lines(lines: Sequence[Line]) -> tuple[list[Cents], Cents]:
    """Cents per line and in total; every column and the totals add up exactly."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        cost = [max(Decimal(0), line.cost + line.allocated_cost) for line in lines]
        fee = [max(Decimal(0), line.fee + line.allocated_fee) for line in lines]
        received = [max(Decimal(0), line.allocated_cost + line.allocated_fee) for line in lines]
        total_cost = to_cents(sum((line.cost for line in lines), Decimal(0)))
        total_fee = to_cents(sum((line.fee for line in lines), Decimal(0)))
        moved = to_cents(sum(received, Decimal(0)))
        cost_c = largest_remainder(cost, total_cost)
        fee_c = largest_remainder(fee, total_fee)
        received_c = largest_remainder(received, moved)
    per_line = [Cents(c, f, r, c + f) for c, f, r in zip(cost_c, fee_c, received_c)]
    return per_line, Cents(total_cost, total_fee, moved, total_cost + total_fee)


def round_column(amounts: Sequence[Decimal]) -> tuple[list[int], int]:
    """One column to cents that sum to its rounded exact total (showback's list cost)."""
    total = to_cents(sum(amounts, Decimal(0)))
    return largest_remainder(amounts, total), total
