-- premium_models: who uses premium models, by model list or by what a single
-- request cost. A model entry matches the billed model (served, else
-- requested) or the requested model exactly; an entry ending in '*' is a
-- prefix ('claude-opus-*' matches every Opus snapshot).
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   premium_models     Array(String)   model names or 'prefix*' patterns ([] = none)
--   min_request_cost   Float64         a request costing at least this (USD) is premium; 0 = off
--
-- Columns (one row per tenant x team x app x model with premium use):
--   tenant, team, app, model
--   premium_requests    requests that matched the list or the price threshold
--   by_model, by_price  how many matched each rule (a request may match both)
--   requests            all requests of that group in the period
--   premium_cost, max_request_cost
--   first_seen, last_seen
--   flagged             always 1 (every row is a finding)
WITH
    arrayExists(p -> if(endsWith(p, '*'),
                        startsWith(billing_model, substring(p, 1, length(p) - 1))
                            OR startsWith(requested_model, substring(p, 1, length(p) - 1)),
                        billing_model = p OR requested_model = p),
                {premium_models:Array(String)}) AS listed,
    {min_request_cost:Float64} > 0 AND toFloat64(cost_total) >= {min_request_cost:Float64} AS pricey,
    listed OR pricey AS premium
SELECT
    tenant,
    team,
    app,
    billing_model AS model,
    countIf(premium) AS premium_requests,
    countIf(listed) AS by_model,
    countIf(pricey) AS by_price,
    count() AS requests,
    sumIf(cost_total, premium) AS premium_cost,
    maxIf(cost_total, premium) AS max_request_cost,
    minIf(started_at, premium) AS first_seen,
    maxIf(started_at, premium) AS last_seen,
    toUInt8(1) AS flagged
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= {start:DateTime64(3, 'UTC')}
  AND started_at < {end:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant = {tenant:String})
GROUP BY tenant, team, app, model
HAVING premium_requests > 0
ORDER BY premium_cost DESC, premium_requests DESC, tenant, team, app, model
