-- bursts: minutes in which an app sent far more requests or tokens than it
-- usually does. The baseline is the app's median per-minute requests and
-- tokens over the minutes in the period in which it sent anything: a median
-- is not moved by the bursts themselves (unless an app bursts in more than
-- half of its active minutes, which then is its normal). A floor keeps small
-- apps from flagging on a handful of requests.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   multiple                   Float64   flag above this many times the baseline (default 5)
--   min_requests_per_minute    UInt64    a request burst needs at least this many requests in the minute
--   min_tokens_per_minute      UInt64    a token burst needs at least this many tokens in the minute
--   only_flagged               UInt8     1 = only burst minutes
--
-- Columns (one row per app x minute):
--   tenant, team, app, minute
--   requests, tokens (input + output)
--   baseline_requests, baseline_tokens   the app's per-minute medians
--   request_factor, token_factor         requests / baseline, tokens / baseline
--   active_minutes                        minutes with traffic behind the baseline
--   cost, flagged (0/1), reasons
WITH
    minutes AS
    (
        SELECT
            tenant,
            team,
            app,
            toStartOfMinute(started_at) AS minute,
            count() AS requests,
            sum(input_tokens + output_tokens) AS tokens,
            sum(cost_total) AS cost
        FROM {db:Identifier}.usage_events FINAL
        WHERE started_at >= {start:DateTime64(3, 'UTC')}
          AND started_at < {end:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant = {tenant:String})
        GROUP BY tenant, team, app, minute
    ),
    baselines AS
    (
        SELECT
            tenant,
            team,
            app,
            quantileExactInclusive(0.5)(toFloat64(requests)) AS baseline_requests,
            quantileExactInclusive(0.5)(toFloat64(tokens)) AS baseline_tokens,
            count() AS active_minutes
        FROM minutes
        GROUP BY tenant, team, app
    )
SELECT
    m.tenant AS tenant,
    m.team AS team,
    m.app AS app,
    m.minute AS minute,
    m.requests AS requests,
    m.tokens AS tokens,
    b.baseline_requests AS baseline_requests,
    b.baseline_tokens AS baseline_tokens,
    if(b.baseline_requests = 0, 0., m.requests / b.baseline_requests) AS request_factor,
    if(b.baseline_tokens = 0, 0., m.tokens / b.baseline_tokens) AS token_factor,
    b.active_minutes AS active_minutes,
    m.cost AS cost,
    arrayFilter(r -> r != '', [
        if(m.requests >= {min_requests_per_minute:UInt64} AND m.requests > {multiple:Float64} * b.baseline_requests,
           concat('requests ', toString(m.requests), '/min = ', toString(round(request_factor, 1)), 'x baseline'), ''),
        if(m.tokens >= {min_tokens_per_minute:UInt64} AND m.tokens > {multiple:Float64} * b.baseline_tokens,
           concat('tokens ', toString(m.tokens), '/min = ', toString(round(token_factor, 1)), 'x baseline'), '')
    ]) AS reasons,
    toUInt8(notEmpty(reasons)) AS flagged
FROM minutes AS m
INNER JOIN baselines AS b ON m.tenant = b.tenant AND m.team = b.team AND m.app = b.app
WHERE flagged OR NOT {only_flagged:UInt8}
ORDER BY flagged DESC, greatest(request_factor, token_factor) DESC, tenant, team, app, minute
