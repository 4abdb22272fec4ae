-- identity_conflicts: requests whose identity headers disagreed with the
-- identity the plugin resolved (consumer tags, route/service tags). The plugin
-- records every disagreement, trusted header or not, as
-- "<attribute>: header=<claimed> resolved=<chosen>"; one row here per
-- attribute x claimed x resolved x consumer. A consumer claiming many teams is
-- a shared credential or a spoofing client.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--
-- Columns:
--   attribute            tenant | team | app | workload
--   header_value         what the request header claimed
--   resolved_value       what the plugin attributed the request to
--   consumer             consumer username (id when unnamed; '' = anonymous)
--   requests, cost, first_seen, last_seen
SELECT
    splitByString(': ', conflict)[1] AS attribute,
    extract(conflict, 'header=(.*) resolved=') AS header_value,
    extract(conflict, ' resolved=(.*)$') AS resolved_value,
    if(consumer_username != '', consumer_username, consumer_id) AS consumer,
    count() AS requests,
    sum(cost_total) AS cost,
    min(started_at) AS first_seen,
    max(started_at) AS last_seen
FROM {db:Identifier}.usage_events FINAL
ARRAY JOIN identity_conflicts AS conflict
WHERE started_at >= {start:DateTime64(3, 'UTC')}
  AND started_at < {end:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant = {tenant:String})
GROUP BY attribute, header_value, resolved_value, consumer
ORDER BY requests DESC, attribute, header_value, resolved_value, consumer
