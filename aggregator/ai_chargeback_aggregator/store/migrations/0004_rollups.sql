-- Rollups: usage and cost per hour and per day, by who (tenant, team, app,
-- consumer), where (route), what (provider, model, tier) and at which price.
--
-- Exactness when an event arrives twice or is repriced: rollups are never fed
-- by materialized views on insert (those would count a duplicate delivery or
-- a reprice twice). The rollup maintainer (aggregator/rollups/) rebuilds a
-- whole hour from `usage_events FINAL` and writes every group of that hour
-- with a new build_version; groups that no longer exist get a tombstone
-- (is_deleted = 1). Read with FINAL, a rollup is therefore exactly the
-- aggregate of the deduplicated raw rows at its build time. Days are rebuilt
-- from their (clean) hours. rollup_state says which hours/days are clean;
-- reports read rollups only for clean periods and raw events for the rest.
--
-- The price (rates and provenance) is part of the key: a group never mixes
-- two prices, so FOCUS rows can state unit price x quantity = cost exactly.
-- Sort key: period first (every read filters on it), then who, then the rest.
CREATE TABLE IF NOT EXISTS {db}.usage_rollup_hourly{local} {on_cluster}
(
    period_start DateTime('UTC'),
    tenant LowCardinality(String),
    team LowCardinality(String),
    app LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    consumer_id String,
    route_id String,
    price_tier LowCardinality(String),
    pricing_status LowCardinality(String),
    price_source LowCardinality(String),
    list_price_source LowCardinality(String),
    catalog_version LowCardinality(String),
    price_model_id LowCardinality(String),
    currency LowCardinality(String),
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

    -- display names (not part of the key: ids are)
    consumer_name String,
    route_name String,

    events UInt64,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_input Decimal(38, 18),
    cost_cached_input Decimal(38, 18),
    cost_cache_write Decimal(38, 18),
    cost_output Decimal(38, 18),
    cost_reasoning Decimal(38, 18),
    cost_request Decimal(38, 18),
    cost_total Decimal(38, 18),
    list_cost_total Decimal(38, 18),

    build_version UInt64,
    is_deleted UInt8
)
ENGINE = {replicated}ReplacingMergeTree(build_version, is_deleted)
PARTITION BY toYYYYMM(period_start)
ORDER BY (period_start, tenant, team, app, provider, model, consumer_id, route_id, price_tier, pricing_status,
          price_source, list_price_source, catalog_version, price_model_id, currency,
          rate_input_e12, rate_cached_input_e12, rate_cache_write_e12, rate_output_e12, rate_reasoning_e12, rate_request_e12,
          list_rate_input_e12, list_rate_cached_input_e12, list_rate_cache_write_e12, list_rate_output_e12,
          list_rate_reasoning_e12, list_rate_request_e12);

-- @distributed usage_rollup_hourly cityHash64(period_start, tenant, team, app)

CREATE TABLE IF NOT EXISTS {db}.usage_rollup_daily{local} {on_cluster}
(
    period_start Date,
    tenant LowCardinality(String),
    team LowCardinality(String),
    app LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    consumer_id String,
    route_id String,
    price_tier LowCardinality(String),
    pricing_status LowCardinality(String),
    price_source LowCardinality(String),
    list_price_source LowCardinality(String),
    catalog_version LowCardinality(String),
    price_model_id LowCardinality(String),
    currency LowCardinality(String),
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

    consumer_name String,
    route_name String,

    events UInt64,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_input Decimal(38, 18),
    cost_cached_input Decimal(38, 18),
    cost_cache_write Decimal(38, 18),
    cost_output Decimal(38, 18),
    cost_reasoning Decimal(38, 18),
    cost_request Decimal(38, 18),
    cost_total Decimal(38, 18),
    list_cost_total Decimal(38, 18),

    build_version UInt64,
    is_deleted UInt8
)
ENGINE = {replicated}ReplacingMergeTree(build_version, is_deleted)
PARTITION BY toYYYYMM(period_start)
ORDER BY (period_start, tenant, team, app, provider, model, consumer_id, route_id, price_tier, pricing_status,
          price_source, list_price_source, catalog_version, price_model_id, currency,
          rate_input_e12, rate_cached_input_e12, rate_cache_write_e12, rate_output_e12, rate_reasoning_e12, rate_request_e12,
          list_rate_input_e12, list_rate_cached_input_e12, list_rate_cache_write_e12, list_rate_output_e12,
          list_rate_reasoning_e12, list_rate_request_e12);

-- @distributed usage_rollup_daily cityHash64(period_start, tenant, team, app)

-- Which periods' rollups are trustworthy. The writer marks an hour (and its
-- day) 'dirty' after every committed insert touching it; the maintainer marks
-- it 'clean' with the version of the store clock read *before* its rebuild
-- began. Highest version wins, so an insert committed during a rebuild leaves
-- the hour dirty. Versions come from the store's clock (now64(9)), one clock
-- for every process that writes here.
CREATE TABLE IF NOT EXISTS {db}.rollup_state{local} {on_cluster}
(
    grain LowCardinality(String),
    period_start DateTime('UTC'),
    state LowCardinality(String),
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {replicated}ReplacingMergeTree(version)
ORDER BY (grain, period_start);

-- @distributed rollup_state cityHash64(grain, period_start)
