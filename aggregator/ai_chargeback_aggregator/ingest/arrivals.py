"""When batches have stopped coming: the writer then stops waiting for more.

A partial flush waits up to ``flush_interval_ms`` for more batches to share its
insert (each insert has a fixed cost and makes a part to merge). At the end of a
burst nothing more comes, and the last batches' acks waited out the whole
interval for nothing: a burst of 300k plugin-shaped events spent 0.88 s of its
5.3 s there (bench/notes.md). So the writer also takes a partial flush once no
batch has arrived for ``QUIET_GAPS`` times the usual gap between batches (an
average that decays, each gap counted up to the flush interval), and never
sooner than ``QUIET_MIN_S`` after the last one. Traffic that arrives steadily
keeps its batching: a gateway sending every second has one-second gaps, so its
batches wait the interval as before, and a fleet whose batches come a few
milliseconds apart almost never leaves 50 ms without one.
"""

from __future__ import annotations

QUIET_GAPS = 4.0
QUIET_MIN_S = 0.05
GAP_WEIGHT = 0.2  # of the newest gap in the running average


class Arrivals:
    """The running average gap between batch arrivals (times on one monotonic clock)."""

    def __init__(self, longest_gap_s: float) -> None:
        self._longest_gap_s = longest_gap_s
        self._gap_s = longest_gap_s  # no history: as if batches came once per flush interval
        self._last: float | None = None

    def arrived(self, at: float) -> None:
        if self._last is not None:
            gap = min(max(at - self._last, 0.0), self._longest_gap_s)
            self._gap_s += GAP_WEIGHT * (gap - self._gap_s)
        self._last = at

    @property
    def usual_gap_s(self) -> float:
        return self._gap_s

    def quiet_at(self) -> float:
        """When a batch that has not come yet would be overdue (+inf before any arrival)."""
        if self._last is None:
            return float("inf")
        return self._last + max(QUIET_MIN_S, QUIET_GAPS * self._gap_s)
