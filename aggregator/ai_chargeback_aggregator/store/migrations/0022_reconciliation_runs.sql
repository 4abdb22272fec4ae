-- Reconciliation runs: what `chargeback reconcile` and the console's upload
-- found, kept as evidence (analytics/reconcile/runs.py).
--
-- A run is written once and never changed: its lines first, then its run row,
-- so a reader that sees the row sees every line (readers start from the row).
-- Which files it read are named with their SHA-256 and size, so a challenged
-- figure can be traced to the exact export and the same export uploaded again
-- is recognised. run_id starts with the UTC time it ran (YYYYMMDDTHHMMSSZ-…),
-- so the sort key keeps runs in time order and one run is a key lookup.
CREATE TABLE IF NOT EXISTS {db}.reconcile_runs{local} {on_cluster}
(
    run_id String,
    ran_at DateTime64(3, 'UTC'),
    ran_by String,                       -- console user, token name, or the OS user of the CLI
    via LowCardinality(String),          -- console | cli | api
    providers Array(String),             -- gateway provider names the exports are about
    period_start DateTime('UTC'),
    period_end DateTime('UTC'),          -- exclusive
    source_names Array(String),          -- file names as given (no directories)
    source_sha256 Array(String),         -- parallel to source_names
    source_bytes Array(UInt64),
    source_formats Array(String),        -- focus | openai_usage | ... (analytics/reconcile/detect.py)
    mapping_sha256 String,               -- the account mapping file's hash ('' = none)
    tolerance_pct Float64,
    tolerance_tokens UInt64,
    tolerance_cost Decimal(38, 18),
    gateway_cost Nullable(Decimal(38, 18)),
    bill_cost Nullable(Decimal(38, 18)),  -- NULL: the exports carry no money (usage exports)
    cost_diff Nullable(Decimal(38, 18)),  -- over the lines that have both sides' cost
    gateway_tokens Nullable(Int64),
    bill_tokens Nullable(Int64),
    tokens_diff Nullable(Int64),
    line_count UInt32,
    matched_lines UInt32,
    differs_lines UInt32,
    gateway_only_lines UInt32,
    bill_only_lines UInt32,
    account_lines UInt32,
    verdict_ok UInt8,
    verdict LowCardinality(String),      -- reconciled | discrepancies | nothing to reconcile
    reasons Array(String),
    notes Array(String),
    summary String,                      -- the matcher's summary, JSON with exact decimals (store/wire.py)
    aggregator_version String
)
ENGINE = {replicated}MergeTree
ORDER BY run_id;

-- @distributed reconcile_runs cityHash64(run_id)

-- One row per line of a run, as the matcher judged it (analytics/reconcile/match.py):
-- section 'lines' is day x provider x model, 'accounts' the same per provider
-- account (with a mapping file). NULL on the bill side: the export does not say.
CREATE TABLE IF NOT EXISTS {db}.reconcile_lines{local} {on_cluster}
(
    run_id String,
    section LowCardinality(String),
    line_no UInt32,
    day Date,
    provider String,
    model String,
    account String,
    status LowCardinality(String),       -- matched | differs | gateway_only | bill_only
    gateway_input_tokens Int64,
    bill_input_tokens Nullable(Int64),
    input_diff Nullable(Int64),
    gateway_output_tokens Int64,
    bill_output_tokens Nullable(Int64),
    output_diff Nullable(Int64),
    gateway_tokens Int64,
    bill_tokens Nullable(Int64),
    tokens_diff Nullable(Int64),
    gateway_cost Decimal(38, 18),
    bill_cost Nullable(Decimal(38, 18)),
    cost_diff Nullable(Decimal(38, 18)),
    gateway_requests Int64,
    bill_requests Nullable(Int64),
    gateway_models Array(String),
    bill_models Array(String),
    detail String                        -- why the line is not matched (and unpriced gateway requests)
)
ENGINE = {replicated}MergeTree
ORDER BY (run_id, section, line_no);

-- @distributed reconcile_lines cityHash64(run_id)
