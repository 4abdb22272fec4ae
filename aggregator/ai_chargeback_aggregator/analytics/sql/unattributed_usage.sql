-- unattributed_usage: traffic no team could be charged for, by route and
-- reason, with its share of the period's events and cost.
--
-- Reads usage_events FINAL. Unattributed = team '' or 'unattributed' (what
-- the plugin records), with unattributed_reason saying why (no-team-tag,
-- no-authenticated-consumer, consumer-not-trusted). Fix the largest rows
-- first; `chargeback report --mode chargeback` allocates what remains.
--
-- Parameters:
--   db      Identifier              database holding usage_events
--   start   DateTime64(3, 'UTC')    inclusive
--   end     DateTime64(3, 'UTC')    exclusive
--
-- Columns (most expensive first):
--   route (name, or id when unnamed), reason, consumers (distinct consumer ids),
--   events, cost, event_share and cost_share (Float64, of all traffic in the period)
SELECT
    if(route_name != '', route_name, route_id) AS route,
    if(unattributed_reason != '', unattributed_reason, 'unknown') AS reason,
    uniqExact(consumer_id) AS consumers,
    count() AS events,
    sum(cost_total) AS cost,
    events / any(all_events) AS event_share,
    if(any(all_cost) = 0, 0., toFloat64(cost) / toFloat64(any(all_cost))) AS cost_share
FROM {db:Identifier}.usage_events FINAL
CROSS JOIN
(
    SELECT count() AS all_events, sum(cost_total) AS all_cost
    FROM {db:Identifier}.usage_events FINAL
    WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
) AS totals
WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
  AND team IN ('', 'unattributed')
GROUP BY route, reason
ORDER BY cost DESC, route, reason
