-- Budgets and their alerts (aggregator/ai_chargeback_aggregator/budgets/).
--
-- budgets: loaded with `chargeback budgets load FILE`, like price_overrides: a
-- budget loaded again under the same budget_id replaces the old one (highest
-- version wins) and a reload with --replace marks the ids missing from the
-- file deleted. Effective dates are local dates in the budget's time zone
-- (from inclusive, to exclusive). Small table: read whole by every aggregator
-- on every evaluation, so a change applies without a restart.
CREATE TABLE IF NOT EXISTS {db}.budgets{local} {on_cluster}
(
    budget_id String,
    -- scope: '' = any; at least one of tenant, team, app, workload, consumer_id is set
    tenant String,
    team String,
    app String,
    workload String,
    consumer_id String,
    provider LowCardinality(String),
    model String,                       -- a model and its dated snapshots
    period LowCardinality(String),      -- daily | weekly | monthly (calendar, in `timezone`)
    timezone LowCardinality(String),    -- IANA name
    unit LowCardinality(String),        -- usd | tokens
    amount Decimal(38, 9),
    cost_basis LowCardinality(String),  -- usd: chargeback | showback; tokens: ''
    thresholds Array(Decimal(9, 4)),    -- percent of amount
    action LowCardinality(String),      -- alert | enforce
    notify Array(String),               -- webhook names ([] = every configured webhook)
    effective_from Date,
    effective_to Nullable(Date),
    note String,
    loaded_from String,
    loaded_at DateTime64(3, 'UTC'),
    version UInt64,
    is_deleted UInt8 DEFAULT 0
)
ENGINE = {replicated}ReplacingMergeTree(version, is_deleted)
ORDER BY budget_id;

-- @distributed budgets cityHash64(budget_id)

-- Who fires an alert: every aggregator that sees a threshold crossed inserts a
-- claim, waits budget_claim_settle_s, reads the claims back and fires only if
-- its own is the first by the store's clock (claimed_at is filled by the
-- store, never by the claimant). An alert_id names (budget, period, threshold,
-- limit), so each threshold fires once per period, across restarts and
-- aggregators. claim_round > 0: a takeover of a delivery whose owner went silent.
-- payload is the alert exactly as sent, so a takeover sends the same text.
CREATE TABLE IF NOT EXISTS {db}.budget_alert_claims{local} {on_cluster}
(
    alert_id String,
    claim_round UInt32,
    claimant String,
    claimed_at DateTime64(9, 'UTC') DEFAULT now64(9),
    budget_id String,
    period_start DateTime('UTC'),
    threshold Decimal(9, 4),
    budget_limit Decimal(38, 9),
    unit LowCardinality(String),
    spend Decimal(38, 9),
    targets Array(String),              -- webhook names the alert goes to
    payload String
)
ENGINE = {replicated}MergeTree
ORDER BY (alert_id, claim_round, claimed_at, claimant);

-- @distributed budget_alert_claims cityHash64(alert_id)

-- Delivery of each alert to each webhook: retried with backoff, every attempt
-- recorded (latest row wins), so failures are visible in `budgets status` and
-- a delivery whose owner died is taken over.
CREATE TABLE IF NOT EXISTS {db}.budget_alert_deliveries{local} {on_cluster}
(
    alert_id String,
    target String,
    claim_round UInt32,
    state LowCardinality(String),       -- retrying | delivered | failed
    attempts UInt32,
    last_status UInt16,                 -- HTTP status of the last attempt (0: no answer)
    last_error String,
    next_attempt_at Nullable(DateTime64(3, 'UTC')),
    delivered_at Nullable(DateTime64(3, 'UTC')),
    deliverer String,
    updated_at DateTime64(9, 'UTC') DEFAULT now64(9)
)
ENGINE = {replicated}ReplacingMergeTree(updated_at)
ORDER BY (alert_id, target);

-- @distributed budget_alert_deliveries cityHash64(alert_id)
