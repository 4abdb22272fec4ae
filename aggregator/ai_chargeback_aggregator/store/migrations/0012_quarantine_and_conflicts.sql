-- Nothing a gateway offered disappears without a trace.
--
-- quarantined_events: events that cannot be stored as sent (they break the
-- contract's limits, ai_chargeback_proto/limits.py): the raw event as received,
-- the field and the reason, and who/what it was about, so reports can say whose
-- traffic is missing. Never billed. A resent batch quarantines its events again:
-- one row per (id as sent, content) after FINAL. No partition: a resend months
-- later must still collapse, and quarantine stays small.
CREATE TABLE IF NOT EXISTS {db}.quarantined_events{local} {on_cluster}
(
    event_id String,            -- as sent, possibly malformed (at most 256 characters)
    content_hash UInt64,
    occurred_at DateTime64(3, 'UTC'),     -- started_at as sent when plausible, else when received
    quarantined_at DateTime64(3, 'UTC'),
    sender_id LowCardinality(String),
    batch_id String,
    field LowCardinality(String),         -- the contract field that broke its rule
    reason String,
    tenant LowCardinality(String),
    team LowCardinality(String),
    app LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    raw_event String CODEC(ZSTD(3))      -- the UsageEvent as received (protobuf)
)
ENGINE = {replicated}ReplacingMergeTree(quarantined_at)
ORDER BY (event_id, content_hash);

-- @distributed quarantined_events cityHash64(event_id)

-- event_conflicts: replays of a stored event id whose content differs from the
-- stored event. The stored version stands and is what reports bill; the replay
-- is kept here for review (`chargeback governance replay-conflicts`). One row
-- per distinct replayed content after FINAL.
CREATE TABLE IF NOT EXISTS {db}.event_conflicts{local} {on_cluster}
(
    event_id UUID,
    content_hash UInt64,                  -- of the replay
    stored_content_hash UInt64,           -- of the version that stands
    detected_at DateTime64(3, 'UTC'),
    sender_id LowCardinality(String),
    batch_id String,
    started_at DateTime64(3, 'UTC'),      -- as the replay says
    tenant LowCardinality(String),
    team LowCardinality(String),
    app LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    raw_event String CODEC(ZSTD(3))
)
ENGINE = {replicated}ReplacingMergeTree(detected_at)
ORDER BY (toUInt128(event_id), content_hash);

-- @distributed event_conflicts cityHash64(event_id)
