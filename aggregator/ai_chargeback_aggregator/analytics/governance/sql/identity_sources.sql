-- identity_sources: where each identity attribute came from, as a share of
-- requests and cost. Consumer-sourced attribution is the accountable kind
-- (an authenticated credential); header-sourced attribution is only as good
-- as the client sending it; default and none are gaps.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--
-- Columns (one row per attribute x source):
--   attribute   tenant | team | app | workload
--   source      consumer | route_tag | service_tag | header | default | none | unspecified
--   requests, request_share (of that attribute's requests), cost, cost_share
SELECT
    attribute,
    source,
    requests,
    requests / sum(requests) OVER (PARTITION BY attribute) AS request_share,
    cost,
    if(sum(cost) OVER (PARTITION BY attribute) = 0, 0.,
       toFloat64(cost) / toFloat64(sum(cost) OVER (PARTITION BY attribute))) AS cost_share
FROM
(
    SELECT
        pair.1 AS attribute,
        pair.2 AS source,
        count() AS requests,
        sum(cost_total) AS cost
    FROM {db:Identifier}.usage_events FINAL
    ARRAY JOIN [('tenant', toString(tenant_source)), ('team', toString(team_source)),
                ('app', toString(app_source)), ('workload', toString(workload_source))] AS pair
    WHERE started_at >= {start:DateTime64(3, 'UTC')}
      AND started_at < {end:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
    GROUP BY attribute, source
)
ORDER BY indexOf(['tenant', 'team', 'app', 'workload'], attribute), requests DESC, source
