"""The contract's per-field limits as one ClickHouse condition over a payload's events.

Validation in Python reads every rule's field through upb, one attribute at a
time: ~4 µs of interpreter time per event, the largest single cost on the ingest
path (issue 20). With the embedded store ClickHouse reads the flush's payload
file anyway, so the counts, their subset rules, the ranges, the text lengths, the
lists and the maps are checked there, vectorized, for every event at once: by the
insert itself in the usual flush (it refuses the whole insert if any event is
flagged), else by the dedup lookup. Admission keeps what the insert itself depends
on (a canonical UUIDv7 id, timestamps in the window, known enum values) and the
lengths of the texts the aggregator holds on to before the store sees the event
(the pricer caches prices by provider, model, tier and tenant). The text, list and
map rules were ~3.5 µs an event of admission for an event as the plugin sends it
(~530 bytes: route, service, consumer, trace, tags), 8 µs live (issue 20).

The condition only flags: an event it flags is validated again in Python
(``validation.validate_event``), which names the first broken rule exactly as
before and quarantines it; an event the condition flags but Python accepts is
stored as usual. So the condition must flag every event Python rejects (a test
holds it to that on every limit and on random events) and may flag more.
Derived from the limits table, as validation.py is, so a new limit reaches both.
"""

from __future__ import annotations

from ai_chargeback_proto import limits
from ai_chargeback_proto.limits import EVENT_LIMITS, Count, Entries, Range, Strings, Text

from .protobuf_insert import NULLABLE_FIELDS


def _count(name: str) -> str:
    # An absent optional reads as NULL (0 in Python); the other fields read one as 0 already, and
    # an ifNull around them would only cost the engine's planning of every insert (~1.3 ms in all).
    return f"ifNull({name}, 0)" if name in NULLABLE_FIELDS else name


def _range(name: str, limit: Range) -> str:
    value = _count(name)  # an absent optional reads as 0 in Python too
    above = f"{value} > {limit.high}"
    if limit.low <= 0:  # the fields are unsigned (limits.py holds ranges to uint32): nothing is below
        return above
    below = f"{value} < {limit.low}" + (f" AND {value} != 0" if limit.zero_means_unset else "")
    return f"{above} OR ({below})"


def _longer(value: str, limit: Text) -> str:
    # Bytes, which a string is never shorter in than in characters (Python's len()): so every
    # string Python finds too long is flagged, and one of multi-byte characters may be flagged
    # that Python accepts (it is then checked again and stored; its flush takes the slow way).
    # Counting characters here cost ~0.5-1 µs a row of the insert for plugin-shaped events.
    return f"length({value}) > {limit.max_chars}"


def _entries(name: str, limit: Entries) -> str:
    keys = f"arrayExists(k -> k = '' OR {_longer('k', limit.key)}, mapKeys({name}))"
    value = _longer("v", limit.value) if isinstance(limit.value, Text) else f"v > {limit.value.max}"
    return f"length({name}) > {limit.max_entries} OR {keys} OR arrayExists(v -> {value}, mapValues({name}))"


def _texts(names: list[str], limit: Text) -> str:
    # One comparison for all the texts of one limit: the engine plans each insert's condition
    # anew, and ~20 separate ones cost it ~2-3 ms per insert, whatever the insert's size.
    if len(names) == 1:
        return _longer(names[0], limit)
    return f"greatest({', '.join(f'length({name})' for name in names)}) > {limit.max_chars}"


def _conditions() -> list[str]:
    out: list[str] = []
    texts: dict[Text, list[str]] = {}
    for name, limit in EVENT_LIMITS.items():
        if isinstance(limit, Count):
            out.append(f"{_count(name)} > {limit.max}")
        elif isinstance(limit, Range):
            out.append(_range(name, limit))
        elif isinstance(limit, Text):
            texts.setdefault(limit, []).append(name)
        elif isinstance(limit, Strings):
            out.append(f"length({name}) > {limit.max_items} OR arrayExists(x -> {_longer('x', limit.item)}, {name})")
        elif isinstance(limit, Entries):
            out.append(_entries(name, limit))
    out += [_texts(names, limit) for limit, names in texts.items()]

    for parts, whole in limits.SUBSET_RULES:
        # (a part past its own ceiling is flagged above, so a wrapped sum does not hide anything)
        out.append(f"{' + '.join(_count(p) for p in parts)} > {_count(whole)}")
    return out


# The fields the condition reads (the lookup reads only these from the payload).
CHECKED_FIELDS: tuple[str, ...] = tuple(
    name for name, limit in EVENT_LIMITS.items() if isinstance(limit, (Count, Range, Text, Strings, Entries))
)
# True for an event that may break a rule admission left to the store.
INVALID_CONDITION = " OR ".join(f"({condition})" for condition in _conditions())
