-- Prices on every raw event: the rates the pricer resolved at ingest (or at a
-- reprice), where they came from, and the costs ClickHouse computes from them.
--
-- Rates are integers: USD per 1M tokens x 10^12 (per request x 10^12 for the
-- request fee). Integers are exact, and they insert about eight times faster
-- than Decimal columns, which matters at 100k events/s. Costs are MATERIALIZED
-- Decimal(38, 18): tokens x rate_e12 x 10^-18 is exact in Decimal128, so no
-- floating point and no per-row Python Decimal anywhere.
--
-- Token rule (see migration 0001): input includes cached and cache-write input;
-- output includes reasoning. The leaf counts below are what each rate applies
-- to, so nothing is ever counted twice. least() guards rows written around
-- validation (benchmarks) from wrapping an unsigned subtraction.
--
-- In cluster mode the renderer repeats this column ALTER on the Distributed
-- table in front of the shards (aggregator/schema.py).
ALTER TABLE {db}.usage_events{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS billing_model LowCardinality(String) MATERIALIZED if(served_model != '', served_model, requested_model),
    ADD COLUMN IF NOT EXISTS uncached_input_tokens UInt64 MATERIALIZED input_tokens - least(input_tokens, cached_input_tokens + cache_write_input_tokens),
    ADD COLUMN IF NOT EXISTS non_reasoning_output_tokens UInt64 MATERIALIZED output_tokens - least(output_tokens, reasoning_tokens),
    -- provenance: priced | unpriced (no known price: never shown as $0)
    ADD COLUMN IF NOT EXISTS pricing_status LowCardinality(String) DEFAULT 'unpriced',
    ADD COLUMN IF NOT EXISTS price_tier LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS price_source LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS list_price_source LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS catalog_version LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS price_model_id LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS currency LowCardinality(String) DEFAULT 'USD',
    ADD COLUMN IF NOT EXISTS reprice_run_id String DEFAULT '',
    -- contracted rates (what we pay: catalog, or a negotiated override)
    ADD COLUMN IF NOT EXISTS rate_input_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rate_cached_input_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rate_cache_write_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rate_output_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rate_reasoning_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS rate_request_e12 UInt64 DEFAULT 0,
    -- list rates (public price; for private models, the override's)
    ADD COLUMN IF NOT EXISTS list_rate_input_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS list_rate_cached_input_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS list_rate_cache_write_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS list_rate_output_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS list_rate_reasoning_e12 UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS list_rate_request_e12 UInt64 DEFAULT 0,
    -- costs, computed by ClickHouse from the rates above
    ADD COLUMN IF NOT EXISTS cost_input Decimal(38, 18) MATERIALIZED toDecimal128(uncached_input_tokens, 0) * toDecimal128(rate_input_e12, 0) * toDecimal128('0.000000000000000001', 18),
    ADD COLUMN IF NOT EXISTS cost_cached_input Decimal(38, 18) MATERIALIZED toDecimal128(cached_input_tokens, 0) * toDecimal128(rate_cached_input_e12, 0) * toDecimal128('0.000000000000000001', 18),
    ADD COLUMN IF NOT EXISTS cost_cache_write Decimal(38, 18) MATERIALIZED toDecimal128(cache_write_input_tokens, 0) * toDecimal128(rate_cache_write_e12, 0) * toDecimal128('0.000000000000000001', 18),
    ADD COLUMN IF NOT EXISTS cost_output Decimal(38, 18) MATERIALIZED toDecimal128(non_reasoning_output_tokens, 0) * toDecimal128(rate_output_e12, 0) * toDecimal128('0.000000000000000001', 18),
    ADD COLUMN IF NOT EXISTS cost_reasoning Decimal(38, 18) MATERIALIZED toDecimal128(reasoning_tokens, 0) * toDecimal128(rate_reasoning_e12, 0) * toDecimal128('0.000000000000000001', 18),
    ADD COLUMN IF NOT EXISTS cost_request Decimal(38, 18) MATERIALIZED toDecimal128(rate_request_e12, 0) * toDecimal128('0.000000000001', 12),
    ADD COLUMN IF NOT EXISTS cost_total Decimal(38, 18) MATERIALIZED cost_input + cost_cached_input + cost_cache_write + cost_output + cost_reasoning + cost_request,
    ADD COLUMN IF NOT EXISTS list_cost_total Decimal(38, 18) MATERIALIZED
        (toDecimal128(uncached_input_tokens, 0) * toDecimal128(list_rate_input_e12, 0)
         + toDecimal128(cached_input_tokens, 0) * toDecimal128(list_rate_cached_input_e12, 0)
         + toDecimal128(cache_write_input_tokens, 0) * toDecimal128(list_rate_cache_write_e12, 0)
         + toDecimal128(non_reasoning_output_tokens, 0) * toDecimal128(list_rate_output_e12, 0)
         + toDecimal128(reasoning_tokens, 0) * toDecimal128(list_rate_reasoning_e12, 0)
         + toDecimal128(list_rate_request_e12, 0) * toDecimal128(1000000, 0)) * toDecimal128('0.000000000000000001', 18);

-- Time pruning for rollup rebuilds, dirty-hour report reads and the
-- watermark scan that finds rows written since the last rollup pass: the sort
-- key starts with tenant/team/app, so time alone would otherwise scan a month.
ALTER TABLE {db}.usage_events{local} {on_cluster}
    ADD INDEX IF NOT EXISTS idx_started_at started_at TYPE minmax GRANULARITY 1,
    ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1
