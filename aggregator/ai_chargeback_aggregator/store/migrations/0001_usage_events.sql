-- Raw usage events: one row per metered request, as the plugin saw it.
--
-- ReplacingMergeTree keyed on the event id: a row delivered twice (retries,
-- replays, two aggregators) collapses to one, and `FINAL` reads are exact before
-- merges happen. Sort key: low-cardinality columns analysts always filter on go
-- leftmost (tenant, team, app), then the hour, then the event id that makes the
-- key unique per event.
CREATE TABLE IF NOT EXISTS {db}.usage_events{local} {on_cluster}
(
    -- identity of the event
    event_id UUID,
    kong_request_id String,
    started_at DateTime64(3, 'UTC'),
    observed_at DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC'),
    gateway_node LowCardinality(String),
    sender_id LowCardinality(String),

    -- who: each attribute with the source it came from
    tenant LowCardinality(String),
    tenant_source LowCardinality(String),
    team LowCardinality(String),
    team_source LowCardinality(String),
    app LowCardinality(String),
    app_source LowCardinality(String),
    workload String,
    workload_source LowCardinality(String),
    unattributed_reason LowCardinality(String),
    identity_conflicts Array(String),
    consumer_id String,
    consumer_username String,
    consumer_custom_id String,
    credential_fingerprint String,
    client_ip String,
    trace_id String,

    -- where
    route_id String,
    route_name LowCardinality(String),
    service_id String,
    service_name LowCardinality(String),

    -- what: input includes cached and cache-write; output includes reasoning
    provider LowCardinality(String),
    api_family LowCardinality(String),
    requested_model LowCardinality(String),
    served_model LowCardinality(String),
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_input_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    -- bit per token field the provider actually reported (1 input, 2 cached,
    -- 4 cache write, 8 output, 16 reasoning): keeps "missing" apart from zero
    usage_reported_mask UInt8,
    billable_extras Map(LowCardinality(String), UInt64),
    usage_source LowCardinality(String),
    usage_note LowCardinality(String),
    streaming Bool,
    service_tier LowCardinality(String),

    -- how it went
    latency_total_ms UInt32,
    latency_upstream_ms Int32,  -- -1: never proxied
    latency_gateway_ms UInt32,
    http_status UInt16,
    upstream_tries UInt16,
    client_retry_count UInt16,
    policy_outcome LowCardinality(String),

    tags Map(LowCardinality(String), String),

    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 4,
    INDEX idx_request_id kong_request_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = {replicated}ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (tenant, team, app, toStartOfHour(started_at), event_id);

-- @distributed usage_events cityHash64(event_id)
