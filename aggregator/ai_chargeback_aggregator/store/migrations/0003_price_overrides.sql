-- Effective-dated price overrides: negotiated discounts, private models,
-- corrections to the public catalog, per-tenant contracts.
--
-- Loaded with `chargeback prices load FILE`; a row loaded again under the same
-- override_id replaces the old one (highest version wins), and a reload with
-- --replace marks the ids missing from the file deleted, so the table always
-- says what the last load meant. Rates are USD per 1M tokens (per request for
-- per_request); NULL means "not set here" (see aggregator/pricing/overrides.py
-- for the fallback rules). Small table: read whole by every aggregator.
CREATE TABLE IF NOT EXISTS {db}.price_overrides{local} {on_cluster}
(
    override_id String,
    -- what it applies to ('' = any)
    provider LowCardinality(String),
    model String,
    tenant String,
    service_tier LowCardinality(String),
    -- when: UTC days, from inclusive, to exclusive (NULL = open-ended)
    effective_from Date,
    effective_to Nullable(Date),
    -- 'contract': what we pay (list price stays the catalog's);
    -- 'list': replaces the public price itself (private model, correction)
    kind LowCardinality(String),
    currency LowCardinality(String) DEFAULT 'USD',
    input_per_mtok Nullable(Decimal(18, 12)),
    cached_input_per_mtok Nullable(Decimal(18, 12)),
    cache_write_per_mtok Nullable(Decimal(18, 12)),
    output_per_mtok Nullable(Decimal(18, 12)),
    reasoning_per_mtok Nullable(Decimal(18, 12)),
    per_request Nullable(Decimal(18, 12)),
    -- percent off the list rates (contract overrides without explicit rates)
    discount_percent Nullable(Decimal(9, 6)),
    note String,
    loaded_from String,
    loaded_at DateTime64(3, 'UTC'),
    version UInt64,
    is_deleted UInt8 DEFAULT 0
)
ENGINE = {replicated}ReplacingMergeTree(version, is_deleted)
ORDER BY override_id;

-- @distributed price_overrides cityHash64(override_id)
