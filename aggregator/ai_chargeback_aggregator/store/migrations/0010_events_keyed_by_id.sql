-- One event id, one row, whatever a replay changes.
--
-- 0001 keyed usage_events by (tenant, team, app, hour, event_id) and partitioned
-- it by the month of started_at: two deliveries of one id with another team or
-- time were two rows, even after FINAL. The table that replaces it (filled and
-- swapped in by 0011) derives key and partition from the id alone:
--   * ORDER BY toUInt128(event_id): a UUIDv7 as a number is its time, then its
--     randomness, so the key is time-ordered and unique per event. (ClickHouse
--     compares UUID values by their second half first, hence not plain event_id.)
--   * PARTITION BY the month the UUIDv7 carries; ids that are not UUIDv7 (only
--     rows stored before 0010: validation now requires UUIDv7) use started_at.
-- Every copy of an event therefore collapses under FINAL, and the writer looks
-- ids up by this key before inserting (exact dedup beyond any memory window).
--
-- content_hash: 64-bit digest of the event's canonical encoding, so a replay
-- with different content is told apart from a resend (0 = stored before 0010:
-- unknown, a replay of it counts as a duplicate).
ALTER TABLE {db}.usage_events{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS content_hash UInt64 DEFAULT 0;

CREATE TABLE IF NOT EXISTS {db}.usage_events_by_id{local} {on_cluster} AS {db}.usage_events{local}
ENGINE = {replicated}ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(if(UUIDv7ToDateTime(event_id) = 0, started_at, UUIDv7ToDateTime(event_id)))
ORDER BY toUInt128(event_id);

-- @distributed usage_events_by_id cityHash64(event_id)
