-- Write probes: while its inserts fail and no batch is pending, the writer
-- writes one row here now and then; the first that succeeds makes it ready
-- again (readiness, gRPC health) without waiting for traffic that a balancer
-- no longer sends to an unready aggregator. One row per aggregator after merges.
CREATE TABLE IF NOT EXISTS {db}.store_probes{local} {on_cluster}
(
    aggregator_id String,
    probed_at DateTime64(3, 'UTC')
)
ENGINE = {replicated}ReplacingMergeTree(probed_at)
ORDER BY aggregator_id;

-- @distributed store_probes cityHash64(aggregator_id)
