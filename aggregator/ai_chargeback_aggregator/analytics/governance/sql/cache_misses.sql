-- cache_misses: prompt-cache effectiveness per app where caching is expected.
-- An app built around a long shared prefix (system prompt, RAG context) that
-- stops hitting the cache pays full input price for it. Only requests whose
-- provider reported input tokens (usage_reported_mask bit 1) and that had
-- input count; cache writes (cache_write_input_tokens) are not hits.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   apps            Array(String)   apps expected to cache
--   min_hit_ratio   Float64         flag when cached / input tokens is below this (0..1)
--   min_requests    UInt64          ignore apps with fewer counted requests
--   only_flagged    UInt8           1 = only flagged apps
--
-- Columns:
--   tenant, team, app
--   requests, miss_requests (no cached input), request_miss_ratio
--   input_tokens, cached_input_tokens, token_hit_ratio, token_miss_ratio
--   cost, first_seen, last_seen
--   flagged (0/1), reasons
SELECT
    tenant,
    team,
    app,
    requests,
    miss_requests,
    if(requests = 0, 0., miss_requests / requests) AS request_miss_ratio,
    input_sum AS input_tokens,
    cached_sum AS cached_input_tokens,
    if(input_sum = 0, 0., cached_sum / input_sum) AS token_hit_ratio,
    1 - token_hit_ratio AS token_miss_ratio,
    cost,
    first_seen,
    last_seen,
    arrayFilter(r -> r != '', [
        if(requests >= {min_requests:UInt64} AND token_hit_ratio < {min_hit_ratio:Float64},
           concat('hit ratio ', toString(round(token_hit_ratio, 3)), ' < ', toString({min_hit_ratio:Float64})), '')
    ]) AS reasons,
    toUInt8(notEmpty(reasons)) AS flagged
FROM
(
    SELECT
        tenant,
        team,
        app,
        count() AS requests,
        countIf(cached_input_tokens = 0) AS miss_requests,
        sum(input_tokens) AS input_sum,
        sum(least(cached_input_tokens, input_tokens)) AS cached_sum,
        sum(cost_total) AS cost,
        min(started_at) AS first_seen,
        max(started_at) AS last_seen
    FROM {db:Identifier}.usage_events FINAL
    WHERE started_at >= {start:DateTime64(3, 'UTC')}
      AND started_at < {end:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
      AND has({apps:Array(String)}, app)
      AND bitAnd(usage_reported_mask, 1) = 1
      AND input_tokens > 0
    GROUP BY tenant, team, app
)
WHERE flagged OR NOT {only_flagged:UInt8}
ORDER BY flagged DESC, token_hit_ratio, requests DESC, tenant, team, app
