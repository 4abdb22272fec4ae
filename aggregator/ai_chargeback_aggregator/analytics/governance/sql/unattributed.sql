-- unattributed: where unattributed traffic comes from, by service, route and
-- reason, with its share of that route's requests and cost. Fix the biggest
-- rows first: tag the consumer (reason no-team-tag), require authentication
-- on the route (no-authenticated-consumer), or trust consumers
-- (consumer-not-trusted).
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--
-- Columns (one row per service x route x reason with unattributed traffic):
--   service, route        names (ids when unnamed; '(none)' when the request matched none)
--   reason                unattributed_reason ('unknown' when the plugin gave none)
--   unattributed_requests, route_requests, request_share
--   unattributed_cost, route_cost, cost_share
--   first_seen, last_seen
SELECT
    service,
    route,
    reason,
    unattributed_requests,
    route_requests,
    if(route_requests = 0, 0., unattributed_requests / route_requests) AS request_share,
    unattributed_cost,
    route_cost,
    if(route_cost = 0, 0., toFloat64(unattributed_cost) / toFloat64(route_cost)) AS cost_share,
    first_seen,
    last_seen
FROM
(
    SELECT
        service,
        route,
        reason,
        requests AS unattributed_requests,
        cost AS unattributed_cost,
        sum(requests) OVER (PARTITION BY service, route) AS route_requests,
        sum(cost) OVER (PARTITION BY service, route) AS route_cost,
        first_seen,
        last_seen
    FROM
    (
        SELECT
            multiIf(service_name != '', toString(service_name), service_id != '', service_id, '(none)') AS service,
            multiIf(route_name != '', toString(route_name), route_id != '', route_id, '(none)') AS route,
            if(team IN ('', 'unattributed'), if(unattributed_reason = '', 'unknown', toString(unattributed_reason)), '') AS reason,
            count() AS requests,
            sum(cost_total) AS cost,
            min(started_at) AS first_seen,
            max(started_at) AS last_seen
        FROM {db:Identifier}.usage_events FINAL
        WHERE started_at >= {start:DateTime64(3, 'UTC')}
          AND started_at < {end:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant = {tenant:String})
        GROUP BY service, route, reason
    )
)
WHERE reason != ''
ORDER BY unattributed_cost DESC, unattributed_requests DESC, service, route, reason
