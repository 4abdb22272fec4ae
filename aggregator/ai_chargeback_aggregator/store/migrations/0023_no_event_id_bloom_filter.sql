-- The raw table is keyed by toUInt128(event_id) since 0010, so a lookup by id
-- (`event_id IN ...`: the writer's dedup before every insert, the governance
-- replay check) already reads only the granules that can hold those ids, by the
-- primary key. The bloom filter 0001 put on event_id then skipped nothing more
-- (EXPLAIN indexes = 1: the key kept 5 of 245 granules, the filter 5 of those 5),
-- and hashing every id for it cost each insert and each merge 1.3–2.4 µs of CPU
-- per event (issue 20). tests/aggregator/test_lookup_by_key.py holds the lookup
-- to the key's granules without it.
ALTER TABLE {db}.usage_events{local} {on_cluster} DROP INDEX IF EXISTS idx_event_id
