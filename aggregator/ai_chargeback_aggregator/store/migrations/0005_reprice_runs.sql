-- Re-rating: when and why costs were recomputed after a price change.
--
-- A reprice re-inserts the affected events as newer versions (ingested_at =
-- the run's time, reprice_run_id set) of the same event ids, so the
-- ReplacingMergeTree keeps exactly one priced row per event and the rollups
-- of the touched hours are rebuilt. One row per run; its status row is
-- replaced as the run progresses (highest version wins).
CREATE TABLE IF NOT EXISTS {db}.reprice_runs{local} {on_cluster}
(
    run_id String,
    status LowCardinality(String),  -- running | done | failed
    reason String,
    requested_by String,
    range_from Date,
    range_to Date,  -- exclusive
    catalog_version LowCardinality(String),
    overrides_digest String,
    events_examined UInt64,
    events_repriced UInt64,
    cost_before Decimal(38, 18),
    cost_after Decimal(38, 18),
    list_cost_before Decimal(38, 18),
    list_cost_after Decimal(38, 18),
    error String,
    started_at DateTime64(3, 'UTC'),
    finished_at Nullable(DateTime64(3, 'UTC')),
    version UInt64
)
ENGINE = {replicated}ReplacingMergeTree(version)
ORDER BY run_id;

-- @distributed reprice_runs cityHash64(run_id)

-- Rates resolved by the pricer for one run, joined to the events it reprices
-- (equality on the price key, ASOF on input tokens for tiered prices). Kept a
-- week for audit, then dropped by TTL.
CREATE TABLE IF NOT EXISTS {db}.reprice_rates{local} {on_cluster}
(
    run_id String,
    provider LowCardinality(String),
    model LowCardinality(String),
    service_tier LowCardinality(String),
    tenant LowCardinality(String),
    day Date,
    slot UInt8,  -- half-hour of the day for time-of-day prices, else 0
    tier_from UInt64,  -- tiered prices: applies when input_tokens >= tier_from
    pricing_status LowCardinality(String),
    price_tier LowCardinality(String),
    price_source LowCardinality(String),
    list_price_source LowCardinality(String),
    catalog_version LowCardinality(String),
    price_model_id LowCardinality(String),
    rate_input_e12 UInt64,
    rate_cached_input_e12 UInt64,
    rate_cache_write_e12 UInt64,
    rate_output_e12 UInt64,
    rate_reasoning_e12 UInt64,
    rate_request_e12 UInt64,
    list_rate_input_e12 UInt64,
    list_rate_cached_input_e12 UInt64,
    list_rate_cache_write_e12 UInt64,
    list_rate_output_e12 UInt64,
    list_rate_reasoning_e12 UInt64,
    list_rate_request_e12 UInt64,
    created_at DateTime DEFAULT now()
)
ENGINE = {replicated}MergeTree
ORDER BY (run_id, provider, model, service_tier, tenant, day, slot, tier_from)
TTL created_at + INTERVAL 7 DAY;

-- @distributed reprice_rates cityHash64(run_id)
