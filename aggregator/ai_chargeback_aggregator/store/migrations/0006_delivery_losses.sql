-- Events gateways had to drop (sender queue or spool over its cap), as the
-- loss records they report: the gap is stored and shown in reports, never
-- silent. A loss record can arrive more than once (its batch resent, or sent
-- to two aggregators): ReplacingMergeTree on the loss id, read with FINAL.
CREATE TABLE IF NOT EXISTS {db}.delivery_losses{local} {on_cluster}
(
    loss_id String,
    sender_id LowCardinality(String),
    first_lost_at DateTime64(3, 'UTC'),
    last_lost_at DateTime64(3, 'UTC'),
    events_lost UInt64,
    reason LowCardinality(String),
    reported_at DateTime64(3, 'UTC')
)
ENGINE = {replicated}ReplacingMergeTree(reported_at)
PARTITION BY toYYYYMM(first_lost_at)
ORDER BY loss_id;

-- @distributed delivery_losses cityHash64(loss_id)
