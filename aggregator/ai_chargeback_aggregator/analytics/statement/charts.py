"""Inline SVG charts, drawn in Python: the statement is one file that opens anywhere, offline.

Amounts arrive as the reports' exact Decimals and cent strings. Floats are used
for geometry only; every number a reader sees is the report's own text. Each
chart and bar carries ``data-*`` attributes (chart, key, day, value) so tools and
tests can read the figures back from the rendered page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html import escape
from math import floor, log10

# Colour-blind-safe (Okabe-Ito based); an app keeps its colour in every chart.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D31", "#999999")
OTHER = "(other apps)"
FONT = "font-family=\"inherit\""
AXIS = "#6b7280"
GRID = "#e5e7eb"
MAX_LABEL_CHARS = 52  # no text measurement server-side: long names are cut, the full one is in <title>


@dataclass(frozen=True)
class Bar:
    key: str  # the report line's key
    label: str
    value: Decimal  # exact, for geometry
    text: str  # what is printed beside the bar: the report's money text
    color: str = PALETTE[0]
    flag: str = ""  # e.g. UNPRICED: printed in place of a silent zero
    note: str = ""


@dataclass(frozen=True)
class Day:
    day: date
    amount: str  # the day's cents, as printed
    events: int
    parts: Mapping[str, Decimal]  # series -> exact amount (stack geometry)


def attr(value: object) -> str:
    return escape(str(value), quote=True)


def colors_for(labels: Sequence[str]) -> dict[str, str]:
    """First labels get the palette; past it everything shares the grey of 'other'."""
    return {label: PALETTE[i] if i < len(PALETTE) - 1 else PALETTE[-1] for i, label in enumerate(labels)}


def nice_ceiling(value: float) -> tuple[float, float]:
    """(axis maximum, step) for about four gridlines at round numbers."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    magnitude = 10 ** floor(log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = step * -(-value // step)
    return top, step


def _tick(value: float, step: float) -> str:
    return f"{value:,.0f}" if step >= 1 else f"{value:,.2f}"


def _cut(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def daily_chart(days: Sequence[Day], series: Sequence[str], colors: Mapping[str, str], *, currency: str) -> str:
    """Stacked columns, one per UTC day, split by app; the day's amount is in each column's tooltip and data."""
    width, height = 1040, 260
    left, right, top, bottom = 64, 12, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((float(sum(d.parts.values(), Decimal(0))) for d in days), default=0.0)
    axis_max, step = nice_ceiling(peak)
    slot = plot_w / max(len(days), 1)
    bar_w = max(2.0, slot * 0.72)
    out = [
        (
            f'<svg class="chart" data-chart="daily" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="Daily spend ({attr(currency)})" xmlns="http://www.w3.org/2000/svg" {FONT}>'
        )
    ]
    tick = 0.0
    while tick <= axis_max + step / 1000:
        y = top + plot_h - tick / axis_max * plot_h
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{AXIS}">{_tick(tick, step)}</text>')
        tick += step
    out.append(f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="11" fill="{AXIS}" transform="rotate(-90 12 {top + plot_h / 2:.1f})" '
               f'text-anchor="middle">{attr(currency)} per day</text>')  # fmt: skip
    every = 1 if len(days) <= 31 else 7
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        out.append(f'<g class="day" data-day="{d.day.isoformat()}" data-value="{attr(d.amount)}" data-events="{d.events}">')
        out.append(f"<title>{d.day.isoformat()}: {attr(currency)} {attr(d.amount)}, {d.events:,} requests</title>")
        y = top + plot_h
        for name in series:
            value = d.parts.get(name, Decimal(0))
            if value <= 0:
                continue
            h = float(value) / axis_max * plot_h
            y -= h
            out.append(f'<rect class="bar" data-app="{attr(name)}" data-value="{value}" x="{x:.1f}" y="{y:.1f}" '
                       f'width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" fill="{colors.get(name, PALETTE[-1])}"/>')  # fmt: skip
        out.append("</g>")
        if i % every == 0 or i == len(days) - 1:
            cx = left + i * slot + slot / 2
            out.append(f'<text x="{cx:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="10" fill="{AXIS}">{d.day.day}</text>')
            if i == 0 or d.day.day == 1:
                out.append(f'<text x="{cx:.1f}" y="{top + plot_h + 30}" text-anchor="middle" font-size="10" fill="{AXIS}">{d.day:%b}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    out.append("</svg>")
    return "".join(out)


def legend(series: Sequence[str], colors: Mapping[str, str]) -> str:
    items = "".join(
        f'<li><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" rx="2" fill="{colors.get(name, PALETTE[-1])}"/></svg>'
        f"{escape(name)}</li>"
        for name in series
    )
    return f'<ul class="legend">{items}</ul>'


def bar_chart(name: str, bars: Sequence[Bar], *, currency: str) -> str:
    """Horizontal bars, in the order given; name and amount above each bar, so long model names fit.

    An unpriced line shows its flag beside the amount, never a bare zero.
    """
    width, row_h, bar_h = 520, 40, 12
    height = max(len(bars), 1) * row_h + 4
    peak = max((float(b.value) for b in bars), default=0.0) or 1.0
    out = [
        (
            f'<svg class="chart" data-chart="{attr(name)}" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="Spend by {attr(name)} ({attr(currency)})" xmlns="http://www.w3.org/2000/svg" {FONT}>'
        )
    ]
    for i, b in enumerate(bars):
        y = 2 + i * row_h
        w = float(b.value) / peak * width
        out.append(f'<g class="row" data-key="{attr(b.key)}" data-value="{attr(b.text)}" data-flag="{attr(b.flag)}">')
        out.append(f"<title>{escape(b.label)}: {attr(currency)} {escape(b.text)}{' — ' + escape(b.note) if b.note else ''}</title>")
        out.append(f'<text x="0" y="{y + 14}" font-size="12.5" fill="#111827">{escape(_cut(b.label))}</text>')
        flag = f'<tspan fill="#b91c1c" font-weight="700" font-size="10.5">{escape(b.flag)}  </tspan>' if b.flag else ""
        out.append(f'<text x="{width}" y="{y + 14}" text-anchor="end" font-size="12.5" fill="#111827" '
                   f'style="font-variant-numeric: tabular-nums">{flag}{escape(b.text)}</text>')  # fmt: skip
        out.append(f'<rect x="0" y="{y + 20}" width="{width}" height="{bar_h}" fill="#f1f3f6" rx="2"/>')
        if w > 0:
            out.append(f'<rect class="bar" x="0" y="{y + 20}" width="{max(w, 1.5):.1f}" height="{bar_h}" fill="{b.color}" rx="2"/>')
        out.append("</g>")
    if not bars:
        out.append(f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="12" fill="{AXIS}">no usage</text>')
    out.append("</svg>")
    return "".join(out)


def share_bar(parts: Sequence[tuple[str, float, str]], *, name: str) -> str:
    """One 100% bar split into (label, share, colour) parts: an attribute's identity-source mix."""
    width, height = 320, 14
    out = [(f'<svg class="share" data-chart="{attr(name)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{attr(name)}" xmlns="http://www.w3.org/2000/svg">')]  # fmt: skip
    x = 0.0
    for label, share, color in parts:
        w = share * width
        out.append(f'<rect x="{x:.1f}" width="{w:.1f}" height="{height}" fill="{color}" data-source="{attr(label)}" '
                   f'data-share="{share:.4f}"><title>{escape(label)}: {share:.1%}</title></rect>')  # fmt: skip
        x += w
    out.append("</svg>")
    return "".join(out)
