"""Keeps the hourly and daily rollups equal to the deduplicated raw events.

How (the proof lives in docs/storage.md):

* After every committed insert the writer calls ``after_insert``; the hours it
  touched (and their days) are marked dirty in rollup_state, stamped with the
  store clock. Marks that fail to persist stay queued here and are retried.
  On the embedded store this process is the only one that writes events or
  builds rollups, so an hour it marked dirty is not marked again until a build
  may have begun since (``_builds`` counts them) or the mark is a quarter of
  ``settle_s`` old (so an hour still being written never looks settled).
* ``run_once`` rebuilds dirty hours that have been quiet for ``settle_s``
  (so the hour being written now is rebuilt once it goes quiet, not every
  pass): read the store clock (t0), rebuild the hours from ``usage_events
  FINAL``, tombstone groups that vanished, mark the hours clean at version t0.
  A write committed after t0 carries a later dirty mark, which wins: the hour
  stays dirty and is rebuilt next pass. Days whose hours are all clean are
  then rebuilt from the hourly rollup the same way.
* ``reconcile`` finds hours holding rows written after their last clean build
  (a crash between an insert and its mark, rows inserted by other tools) by
  scanning ``ingested_at`` from a watermark, and marks them dirty.
* Hours older than the raw retention are never rebuilt (their raw rows may be
  gone); a dirty one is marked clean as last built, with a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..periods import utc_from_ms
from ..store.clickhouse import Store, StoreError, is_embedded
from . import sql

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0
DEFAULT_SETTLE_S = 60.0
DAYS_PER_STATEMENT = 31  # daily rebuilds; hourly ones go one day per statement
RECONCILE_EVERY_S = 600.0
# Writer clocks and the store clock may disagree a little; re-check this far back.
RECONCILE_MARGIN = timedelta(minutes=2)
RETENTION_SAFETY = timedelta(days=1)
CONTIGUOUS_MARK_SPAN = timedelta(hours=3)
MARK_REFRESH_SHARE = 0.25  # of settle_s: how old a standing dirty mark may get before a write renews it
STANDING_MARKS_KEPT = 10_000  # hours remembered as marked; past it, those a build voided are forgotten
_HOUR_MS = 3_600_000


@dataclass
class PassReport:
    hours_built: int = 0
    days_built: int = 0
    hours_expired: int = 0
    seconds: float = 0.0
    hours: list[datetime] = field(default_factory=list)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def touched_hours(started_ms: Sequence[int]) -> set[datetime]:
    """The hours a batch touched (``started_ms``: its events' start times, ms since the epoch).
    A batch usually spans minutes: marking every hour between its first and last event (a
    superset: an extra rebuild at worst) is 10x cheaper than bucketing 100k timestamps; a batch
    spanning longer (a spool replay) is bucketed exactly."""
    if not started_ms:
        return set()
    first, last = min(started_ms) // _HOUR_MS, max(started_ms) // _HOUR_MS
    if last - first > CONTIGUOUS_MARK_SPAN // timedelta(hours=1):
        return {utc_from_ms(hour * _HOUR_MS) for hour in {ms // _HOUR_MS for ms in started_ms}}
    return {utc_from_ms(hour * _HOUR_MS) for hour in range(first, last + 1)}


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class RollupMaintainer:
    def __init__(
        self,
        store: Store,
        *,
        mark_store: Store | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        settle_s: float = DEFAULT_SETTLE_S,
        raw_retention_days: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        # Dirty marks are written from the writer's thread after each insert: on their own
        # session (the writer's), so they never queue behind a long rebuild on this one.
        self._mark_store = mark_store or store
        self._db = store.database
        self._interval_s = interval_s
        self._settle_ns = int(settle_s * 1e9)
        self._retention_days = raw_retention_days
        self._pending: set[datetime] = set()  # hours whose dirty mark is not persisted yet
        # Embedded store: the only process that marks or builds. A mark stands until a build that
        # may have read the store before the write it covers; `_builds` counts builds begun.
        self._sole_maintainer = is_embedded(store.dsn)
        self._builds = 0
        self._standing: dict[datetime, tuple[int, float]] = {}  # hour -> (_builds, monotonic) at its persisted mark
        self._refresh_s = settle_s * MARK_REFRESH_SHARE
        self._monotonic = monotonic
        self._pending_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watermark: datetime | None = None
        self.last_pass: PassReport | None = None

    # -- marking ------------------------------------------------------------
    def after_insert(self, columns: dict[str, list[Any]]) -> None:
        """Writer hook (after commit): never raises, a failed mark is retried."""
        hours = touched_hours(columns["started_ms"])
        if self._sole_maintainer:
            hours = self._not_standing(hours)
        self.mark_hours_dirty(hours)

    def _not_standing(self, hours: set[datetime]) -> set[datetime]:
        """The hours whose persisted dirty mark does not cover a write committed now: a build
        began since it (and may have read the store before this write), or it is old enough
        that the hour would look quiet. A build that begins after this check reads the write."""
        builds, now = self._builds, self._monotonic()
        with self._pending_lock:
            standing = {h for h in hours if (mark := self._standing.get(h)) and mark[0] == builds and now - mark[1] < self._refresh_s}
        return hours - standing

    def mark_hours_dirty(self, hours: Iterable[datetime]) -> None:
        with self._pending_lock:
            self._pending.update(hours)
            pending = sorted(self._pending)
        if not pending:
            return
        builds, marked_at = self._builds, self._monotonic()  # read before the mark: a build begun during it voids it
        try:
            self._mark_dirty(pending)
        except StoreError as exc:
            log.warning("could not mark %d hour(s) dirty yet, will retry: %s", len(pending), exc)
            return
        with self._pending_lock:
            self._pending.difference_update(pending)
            if self._sole_maintainer:
                if len(self._standing) > STANDING_MARKS_KEPT:
                    self._standing = {h: m for h, m in self._standing.items() if m[0] == builds}
                self._standing.update((h, (builds, marked_at)) for h in pending)

    def _mark_dirty(self, hours: Sequence[datetime]) -> None:
        days = sorted({day_start(h.date()) for h in hours})
        self._mark_store.command(*sql.mark(self._db, {sql.HOUR: hours, sql.DAY: days}, sql.DIRTY))

    # -- building -----------------------------------------------------------
    def run_once(self, *, force: bool = False) -> PassReport:
        """One pass: rebuild settled dirty hours, then days whose hours are all clean."""
        with self._build_lock:
            started = time.perf_counter()
            report = PassReport()
            self.mark_hours_dirty(())  # retry marks that failed earlier
            now_ns = self._build_version()
            dirty_hours, dirty_days = self._dirty()
            horizon = self._retention_horizon()
            expired = [h for h in dirty_hours if horizon is not None and h < horizon]
            if expired:
                log.warning("%d dirty hour(s) are past raw retention; keeping their rollups as last built", len(expired))
                self._store.command(*sql.mark(self._db, {sql.HOUR: expired}, sql.CLEAN, now_ns))
                report.hours_expired = len(expired)
            ready = [h for h, v in dirty_hours.items() if h not in expired and (force or now_ns - v >= self._settle_ns)]
            for chunk in _by_day(ready):
                self._build_hours(chunk)
                report.hours_built += len(chunk)
                report.hours.extend(chunk)
            if ready or dirty_days:
                still_dirty, dirty_days = self._dirty()
                busy_days = {h.date() for h in still_dirty}
                days = sorted(d.date() for d in dirty_days if d.date() not in busy_days)
                for chunk_days in _chunks(days, DAYS_PER_STATEMENT):
                    self._build_days(chunk_days)
                    report.days_built += len(chunk_days)
            report.seconds = time.perf_counter() - started
            self.last_pass = report
            if report.hours_built or report.days_built:
                log.info("rollups: rebuilt %d hour(s), %d day(s) in %.2fs", report.hours_built, report.days_built, report.seconds)
            return report

    def _build_hours(self, hours: Sequence[datetime]) -> None:
        version = self._build_version()
        self._store.command(*sql.build_hours(self._db, hours, version))
        self._store.command(*sql.tombstones(self._db, "usage_rollup_hourly", hours, version, "DateTime('UTC')"))
        self._store.command(*sql.mark(self._db, {sql.HOUR: hours}, sql.CLEAN, version))

    def _build_days(self, days: Sequence[date]) -> None:
        version = self._build_version()
        self._store.command(*sql.build_days(self._db, days, version))
        self._store.command(*sql.tombstones(self._db, "usage_rollup_daily", days, version, "Date"))
        self._store.command(*sql.mark(self._db, {sql.DAY: [day_start(d) for d in days]}, sql.CLEAN, version))
        self._merge_days(days)

    def _merge_days(self, days: Sequence[date]) -> None:
        """Merge the rebuilt days' month partitions of the daily rollup into one part each.

        Every rebuild adds a version of its days (and tombstones); until a background merge
        runs, each report's FINAL merges those parts at read time, and that cost grew with
        every rebuild (5 parts of a month: 560-720 ms per FINAL at 10M events under load).
        A month of the daily rollup is small (tens of thousands of rows), so merging it
        right after a rebuild is cheap; the hourly rollup is 24x larger and rebuilt every
        pass while traffic flows, so it is left to background merges (reports read it only
        for today's clean hours). A failed merge only costs read time: logged, not raised.
        """
        months = sorted({d.year * 100 + d.month for d in days})
        for statement in sql.merge_months(self._db, "usage_rollup_daily", months, cluster=self._store.cluster):
            try:
                self._store.command(*statement)
            except StoreError as exc:
                log.warning("could not merge the daily rollup's partition, reads stay slower until a merge: %s", exc)

    def _dirty(self) -> tuple[dict[datetime, int], dict[datetime, int]]:
        _, rows = self._store.query(*sql.dirty(self._db), read_only=False)
        hours: dict[datetime, int] = {}
        days: dict[datetime, int] = {}
        for grain, period, version in rows:
            (hours if grain == sql.HOUR else days)[_utc(period)] = int(version)
        return hours, days

    def _build_version(self) -> int:
        """The store clock for a build or a clean mark, counted first: marks made before it stand no more."""
        self._builds += 1
        return self._clock()

    def _clock(self) -> int:
        _, rows = self._store.query(*sql.store_clock(), read_only=False)
        return int(rows[0][0])

    def _retention_horizon(self) -> datetime | None:
        if not self._retention_days:
            return None
        return datetime.now(UTC) - timedelta(days=self._retention_days) + RETENTION_SAFETY

    # -- reconciling ----------------------------------------------------------
    def reconcile(self) -> int:
        """Mark dirty every hour with rows written since its last clean build; returns how many."""
        with self._build_lock:
            since = self._watermark
            if since is None:
                _, rows = self._store.query(*sql.latest_clean_version(self._db), read_only=False)
                latest = int(rows[0][0] or 0)
                since = datetime.fromtimestamp(latest / 1e9, tz=UTC) if latest else datetime(1970, 1, 1, tzinfo=UTC)
            since -= RECONCILE_MARGIN
            scan_started = datetime.now(UTC)
            _, written = self._store.query(*sql.written_since(self._db, since), read_only=False)
            if not written:
                self._watermark = scan_started
                return 0
            hours = [_utc(h) for h, _ in written]
            _, state_rows = self._store.query(*sql.states(self._db, sql.HOUR, min(hours), max(hours) + timedelta(hours=1)), read_only=False)
            clean = {_utc(p): int(v) for p, state, v in state_rows if state == sql.CLEAN}
            margin_ns = int(RECONCILE_MARGIN.total_seconds() * 1e9)
            stale = [
                _utc(h) for h, last_write in written
                if _utc(h) not in clean or _ns(last_write) > clean[_utc(h)] - margin_ns
            ]  # fmt: skip
            if stale:
                self.mark_hours_dirty(stale)
            self._watermark = scan_started
            return len(stale)

    # -- thread -------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chargeback-rollups", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self) -> None:
        self._store.close()

    def _run(self) -> None:
        last_reconcile = 0.0
        while not self._stop.wait(self._interval_s):
            try:
                if time.monotonic() - last_reconcile >= RECONCILE_EVERY_S:
                    self.reconcile()
                    last_reconcile = time.monotonic()
                self.run_once()
            except StoreError as exc:
                log.warning("rollup pass failed, retrying next pass: %s", exc)
            except Exception:
                log.exception("rollup pass failed")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_day(hours: Iterable[datetime]) -> list[list[datetime]]:
    """One statement per day: its time bounds then prune the scan to that day."""
    days: dict[date, list[datetime]] = {}
    for hour in sorted(hours):
        days.setdefault(hour.date(), []).append(hour)
    return list(days.values())


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ns(moment: datetime) -> int:
    return int(_utc(moment).timestamp() * 1_000_000) * 1000
