-- retries: apps and routes whose requests are being retried, by the gateway
-- (upstream_tries > 1: Kong re-sent the request to the upstream) or by the
-- client (client_retry_count > 0, from the configured retry-count header).
-- Every try can be billed by the provider, and a retry storm multiplies
-- load exactly when the provider is struggling.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   max_retry_share   Float64   flag when retried / requests is above this (0..1)
--   min_retried       UInt64    ... and at least this many requests were retried
--   only_flagged      UInt8     1 = only flagged groups
--
-- Columns (one row per tenant x team x app x route):
--   tenant, team, app, route
--   requests
--   upstream_retried      requests Kong tried more than once
--   extra_upstream_tries  tries beyond the first, summed
--   client_retried        requests the client marked as a retry
--   client_retries        the client's retry counts, summed
--   max_client_retry
--   retried, retry_share  requests retried either way, and their share
--   error_requests        upstream answered >= 500 or 429
--   retried_cost, first_seen, last_seen, flagged (0/1), reasons
SELECT
    tenant,
    team,
    app,
    route,
    requests,
    upstream_retried,
    extra_upstream_tries,
    client_retried,
    client_retries,
    max_client_retry,
    retried,
    if(requests = 0, 0., retried / requests) AS retry_share,
    error_requests,
    retried_cost,
    first_seen,
    last_seen,
    arrayFilter(r -> r != '', [
        if(retried >= {min_retried:UInt64} AND retry_share > {max_retry_share:Float64},
           concat('retried ', toString(retried), '/', toString(requests), ' = ', toString(round(retry_share, 3)),
                  ' > ', toString({max_retry_share:Float64})), '')
    ]) AS reasons,
    toUInt8(notEmpty(reasons)) AS flagged
FROM
(
    SELECT
        tenant,
        team,
        app,
        multiIf(route_name != '', toString(route_name), route_id != '', route_id, '(none)') AS route,
        count() AS requests,
        countIf(upstream_tries > 1) AS upstream_retried,
        sum(if(upstream_tries > 1, upstream_tries - 1, 0)) AS extra_upstream_tries,
        countIf(client_retry_count > 0) AS client_retried,
        sum(client_retry_count) AS client_retries,
        max(client_retry_count) AS max_client_retry,
        countIf(upstream_tries > 1 OR client_retry_count > 0) AS retried,
        countIf(http_status >= 500 OR http_status = 429) AS error_requests,
        sumIf(cost_total, upstream_tries > 1 OR client_retry_count > 0) AS retried_cost,
        min(started_at) AS first_seen,
        max(started_at) AS last_seen
    FROM {db:Identifier}.usage_events FINAL
    WHERE started_at >= {start:DateTime64(3, 'UTC')}
      AND started_at < {end:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
    GROUP BY tenant, team, app, route
)
WHERE flagged OR NOT {only_flagged:UInt8}
ORDER BY flagged DESC, retried DESC, tenant, team, app, route
