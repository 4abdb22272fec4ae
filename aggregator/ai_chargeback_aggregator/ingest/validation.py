"""Validation of incoming usage events against the contract's limits table.

Every rule comes from ``ai_chargeback_proto.limits`` (the one table the plugin
also derives its truncation from) and the enums of ``usage.proto``. An event
that breaks a rule is not refused silently: the ingest service quarantines it
(raw event, field, reason), acks it as quarantined, and stores the rest of its
batch as usual. Resending it cannot make it valid, so senders never retry it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import groupby
from operator import attrgetter

from ai_chargeback_proto import limits, pb
from ai_chargeback_proto.limits import EVENT_LIMITS, Count, Entries, Enum, Range, Strings, Text, Timestamp

from .rows import KEY_TEXT

_CANONICAL_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}").fullmatch

# Text fields grouped by their limit, shortest first: an event whose whole encoding
# is no longer than a limit cannot hold a field past it, so most groups are skipped.
_TEXT_GROUPS: tuple[tuple[int, tuple[str, ...]], ...] = tuple(
    (max_chars, tuple(name for name, _ in group))
    for max_chars, group in groupby(
        sorted(((n, lim.max_chars) for n, lim in EVENT_LIMITS.items() if isinstance(lim, Text)), key=lambda x: x[1]),
        key=lambda x: x[1],
    )
)
_COUNTS: tuple[tuple[str, int], ...] = tuple((n, lim.max) for n, lim in EVENT_LIMITS.items() if isinstance(lim, Count))
_COUNT_CEILING = min(limit for _, limit in _COUNTS)
_RANGES: tuple[tuple[str, Range], ...] = tuple((n, lim) for n, lim in EVENT_LIMITS.items() if isinstance(lim, Range))
_LISTS: tuple[tuple[str, Strings], ...] = tuple((n, lim) for n, lim in EVENT_LIMITS.items() if isinstance(lim, Strings))
_MAPS: tuple[tuple[str, Entries], ...] = tuple((n, lim) for n, lim in EVENT_LIMITS.items() if isinstance(lim, Entries))
_ENUM_VALUES: tuple[tuple[str, frozenset[int]], ...] = tuple(
    (name, frozenset(v.number for v in pb.UsageEvent.DESCRIPTOR.fields_by_name[name].enum_type.values))
    for name, lim in EVENT_LIMITS.items()
    if isinstance(lim, Enum)
)
_TIMESTAMPS: tuple[tuple[str, bool], ...] = tuple(
    (n, lim.required) for n, lim in EVENT_LIMITS.items() if isinstance(lim, Timestamp)
)
_PAST_DAYS = limits.PAST_WINDOW_MS // limits.DAY_MS


class Invalid(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def uuid7_unix_ms(event_id: str) -> int:
    """The millisecond timestamp a canonical UUIDv7 carries (its first 48 bits)."""
    return int(event_id[:8] + event_id[9:13], 16)


# Every field a rule reads, fetched in one C call per group: reading upb fields one
# getattr at a time was most of validation's cost (~7 µs of ~20 per event, issue 20).
_TIMESTAMP_VALUES = attrgetter(*(n for n, _ in _TIMESTAMPS))
_ENUM_GETTER = attrgetter(*(n for n, _ in _ENUM_VALUES))
_COUNT_GETTER = attrgetter(*(n for n, _ in _COUNTS))
_RANGE_GETTER = attrgetter(*(n for n, _ in _RANGES))
_COUNT_INDEX = {name: i for i, (name, _) in enumerate(_COUNTS)}
_SUBSETS: tuple[tuple[tuple[int, ...], int, str, str], ...] = tuple(
    (tuple(_COUNT_INDEX[p] for p in parts), _COUNT_INDEX[whole], parts[0], f"{' + '.join(parts)} exceed {whole} ({whole} must include them)")
    for parts, whole in limits.SUBSET_RULES
)
_RANGE_CHECKS: tuple[tuple[str, int, int, bool], ...] = tuple((n, w.low, w.high, w.zero_means_unset) for n, w in _RANGES)


def _as_tuple(getter: attrgetter[object], count: int) -> object:
    """attrgetter of one name returns the value itself; the loops below want a tuple."""
    return getter if count > 1 else (lambda event: (getter(event),))


_timestamp_values = _as_tuple(_TIMESTAMP_VALUES, len(_TIMESTAMPS))
_enum_values = _as_tuple(_ENUM_GETTER, len(_ENUM_VALUES))
_count_values = _as_tuple(_COUNT_GETTER, len(_COUNTS))
_range_values = _as_tuple(_RANGE_GETTER, len(_RANGES))


def validate_event(event: pb.UsageEvent, now_ms: int, size: int | None = None) -> None:
    """Raise Invalid naming the first broken rule.

    Runs once per event on the ingest path, so the common case is kept cheap: each
    group of rules reads its fields at once and is checked as a whole before any
    per-field message is worked out (rules are checked in the limits table's order).
    ``size``: the event's encoded length when the caller has it (upb's ByteSize costs
    about twice a serialization).
    """
    _check_id_and_times(event, now_ms)
    if size is None:
        size = event.ByteSize()
    for max_chars, names in _TEXT_GROUPS:
        if size <= max_chars:
            break
        for name in names:
            if len(getattr(event, name)) > max_chars:
                raise Invalid(name, f"longer than {max_chars} characters")
    for (name, values), value in zip(_ENUM_VALUES, _enum_values(event)):  # type: ignore[operator]
        if value not in values:
            raise Invalid(name, "unknown enum value")
    _check_counts(_count_values(event))  # type: ignore[operator]
    for (name, low, high, zero_means_unset), value in zip(_RANGE_CHECKS, _range_values(event)):  # type: ignore[operator]
        if value > high or (value < low and not (zero_means_unset and value == 0)):
            raise Invalid(name, f"outside {low}..{high}")
    for name, listed in _LISTS:
        items = getattr(event, name)
        if items:
            if len(items) > listed.max_items:
                raise Invalid(name, f"more than {listed.max_items} entries")
            if any(len(item) > listed.item.max_chars for item in items):
                raise Invalid(name, f"an entry longer than {listed.item.max_chars} characters")
    for name, mapped in _MAPS:
        entries = getattr(event, name)
        if entries:
            _check_entries(name, mapped, entries)


def _check_id_and_times(event: pb.UsageEvent, now_ms: int) -> None:
    earliest, latest = now_ms - limits.PAST_WINDOW_MS, now_ms + limits.FUTURE_SKEW_MS
    event_id = event.event_id
    if not _CANONICAL_UUID7(event_id):
        raise Invalid("event_id", "not a UUIDv7 in canonical lower-case form")
    if not earliest <= uuid7_unix_ms(event_id) <= latest:
        raise Invalid("event_id", f"the time it carries is outside the accepted window ({_PAST_DAYS} days back, 5 minutes ahead)")
    stamps = _timestamp_values(event)  # type: ignore[operator]
    if not all(stamps) or min(stamps) < earliest or max(stamps) > latest:
        _check_timestamps(stamps, earliest, latest)
    observed = event.observed_at_unix_ms
    if observed and observed < event.started_at_unix_ms - limits.FUTURE_SKEW_MS:
        raise Invalid("observed_at_unix_ms", "before started_at")


def passes_admission_rules(event: pb.UsageEvent, now_ms: int, size: int) -> bool:
    """The rules the insert itself depends on (id, timestamps, enum values) and the lengths of
    the texts held before the store checks them (rows.KEY_TEXT), for a store that checks the
    rest (``sql_validation``). ``size``: the event's encoded length. False: ``validate_event``
    names the first broken rule. (The batch check on a batch of one: one definition of these
    rules besides ``validate_event``.)"""
    return batch_passes_admission_rules((event,), (size,), now_ms)


# A batch's ids joined by newlines: every line one canonical UUIDv7 (checked with the line count).
_CANONICAL_UUID7_LINES = re.compile(r"(?:[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n)*").fullmatch
_UUID_LINE_CHARS = 37
_BATCH_GETTER = attrgetter("event_id", *(n for n, _ in _TIMESTAMPS), *(n for n, _ in _ENUM_VALUES))
_TIMESTAMP_NAMES = [name for name, _ in _TIMESTAMPS]
_STARTED_AT = _TIMESTAMP_NAMES.index("started_at_unix_ms")  # (a ValueError naming it if the table loses it)
_OBSERVED_AT = _TIMESTAMP_NAMES.index("observed_at_unix_ms")
# The texts admission checks with the store checking the rest (rows.KEY_TEXT), by limit.
_HELD_TEXTS: tuple[tuple[int, tuple[str, ...]], ...] = tuple(
    (max_chars, tuple(name for name in names if name in KEY_TEXT))
    for max_chars, names in _TEXT_GROUPS
    if any(name in KEY_TEXT for name in names)
)
_HELD_TEXT_GETTERS = tuple((max_chars, tuple(map(attrgetter, names))) for max_chars, names in _HELD_TEXTS)


def batch_passes_admission_rules(events: Sequence[pb.UsageEvent], sizes: Sequence[int], now_ms: int) -> bool:
    """True when every event passes ``passes_admission_rules`` (``sizes``: their encoded lengths).

    The same rules, checked a column at a time: one regex over all ids, the time window against
    the smallest and largest values, enum values as sets, the held texts' lengths per field.
    Per event they were ~3 µs of the admission's ~6 (issue 20). False tells nothing about
    which event: check each one.
    """
    if not batch_passes_insert_rules(events, now_ms):
        return False
    largest = max(sizes, default=0)
    for max_chars, getters in _HELD_TEXT_GETTERS:
        if largest <= max_chars:
            break
        longer = events if min(sizes) > max_chars else [event for event, size in zip(events, sizes) if size > max_chars]
        if any(max(map(len, map(getter, longer))) > max_chars for getter in getters):
            return False
    return True


def held_texts_fit(texts: Mapping[str, Sequence[str]]) -> bool:
    """The held texts' length rules over a batch's key columns (``rows.key_columns``), for a batch
    that passed ``batch_passes_insert_rules``: admission reads those texts from upb once, for both."""
    return all(max(map(len, texts[name]), default=0) <= max_chars for max_chars, names in _HELD_TEXTS for name in names)


def batch_passes_insert_rules(events: Sequence[pb.UsageEvent], now_ms: int) -> bool:
    """The id, time and enum rules of ``batch_passes_admission_rules``: what the insert depends on."""
    if not events:
        return True
    columns = list(zip(*map(_BATCH_GETTER, events)))
    ids: tuple[str, ...] = columns[0]
    joined = "\n".join(ids) + "\n"
    # A newline inside an id would add a line, so the length pins every line to one id.
    if len(joined) != _UUID_LINE_CHARS * len(ids) or not _CANONICAL_UUID7_LINES(joined):
        return False
    earliest, latest = now_ms - limits.PAST_WINDOW_MS, now_ms + limits.FUTURE_SKEW_MS
    # Canonical ids sort as their 128-bit numbers, so the extremes carry the extreme times.
    if uuid7_unix_ms(min(ids)) < earliest or uuid7_unix_ms(max(ids)) > latest:
        return False
    stamps = columns[1 : 1 + len(_TIMESTAMPS)]
    for (_, required), values in zip(_TIMESTAMPS, stamps):
        present = values if required else list(filter(None, values))
        if present and (min(present) < earliest or max(present) > latest):  # earliest > 0: a missing one is below it
            return False
    started, observed = stamps[_STARTED_AT], stamps[_OBSERVED_AT]
    reported = list(filter(None, observed))
    if reported and min(reported) < max(started) - limits.FUTURE_SKEW_MS:  # then maybe one before its own start
        skew = limits.FUTURE_SKEW_MS
        if any(o and o < s - skew for o, s in zip(observed, started)):
            return False
    enums = columns[1 + len(_TIMESTAMPS) :]
    return all(values.issuperset(column) for (_, values), column in zip(_ENUM_VALUES, enums))


def _check_timestamps(stamps: tuple[int, ...], earliest: int, latest: int) -> None:
    """The slow path: which timestamp broke which rule (first in the table's order)."""
    for (name, required), value in zip(_TIMESTAMPS, stamps):
        if not value:
            if required:
                raise Invalid(name, "missing")
            continue
        if value < earliest:
            raise Invalid(name, f"older than the accepted window ({_PAST_DAYS} days)")
        if value > latest:
            raise Invalid(name, "in the future")


def _check_counts(values: tuple[int, ...]) -> None:
    if max(values) > _COUNT_CEILING:
        for (name, ceiling), value in zip(_COUNTS, values):
            if value > ceiling:
                raise Invalid(name, f"above {ceiling}")
    for parts, whole, first, message in _SUBSETS:
        total = 0
        for part in parts:  # (a generator inside sum() cost more than every other count check)
            total += values[part]
        if total > values[whole]:
            raise Invalid(first, message)


def _check_entries(name: str, mapped: Entries, entries: object) -> None:
    items = entries.items()  # type: ignore[attr-defined]
    if len(entries) > mapped.max_entries:  # type: ignore[arg-type]
        raise Invalid(name, f"more than {mapped.max_entries} entries")
    value_limit = mapped.value
    for key, value in items:
        if not key or len(key) > mapped.key.max_chars:
            raise Invalid(name, f"a key empty or longer than {mapped.key.max_chars} characters")
        if isinstance(value_limit, Text) and len(value) > value_limit.max_chars:
            raise Invalid(name, f"value of {key[:64]!r} longer than {value_limit.max_chars} characters")
        if isinstance(value_limit, Count) and value > value_limit.max:
            raise Invalid(name, f"{key[:64]} above {value_limit.max}")
