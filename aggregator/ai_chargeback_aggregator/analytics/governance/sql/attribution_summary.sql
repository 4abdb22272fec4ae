-- attribution_summary: how much of the period's traffic and cost can be charged
-- back to an accountable team, in one row. The readiness verdict is computed
-- from this row (aggregator/governance/readiness.py).
--
-- "Unattributed" means the plugin could not name a team (team '' or
-- 'unattributed'; unattributed_reason says why). A conflict is a request where
-- an identity header disagreed with the identity the plugin resolved (spoofing
-- or stale client configuration). Raw events are read with FINAL so a
-- duplicate delivery counts once.
--
-- Parameters:
--   db            Identifier              database holding usage_events
--   start         DateTime64(3, 'UTC')    inclusive
--   end           DateTime64(3, 'UTC')    exclusive
--   tenant        String                  '' = every tenant
--
-- Columns:
--   requests, unattributed_requests, unattributed_request_share (0..1)
--   cost, unattributed_cost, unattributed_cost_share (0..1; 0 when cost is 0)
--   conflict_requests, conflict_share
--   header_team_requests, header_team_share   team taken from a request header (spoofable)
--   unpriced_requests, unpriced_share          no known price: cost undercounted
--   estimated_requests, estimated_request_share, estimated_cost, estimated_cost_share
--                                              usage the plugin estimated (labelled), not measured
--   unmeasured_requests, unmeasured_share      answered (allowed) requests with no usage at all:
--                                              their cost is missing from every bill
--   ai_proxy_zero_output_requests              Kong ai-proxy said 0 output tokens for a 200 answer
--                                              with a body (Kong/kong#14535, #14768): estimated instead
--   teams, consumers, credentials              distinct attributed teams, consumers, credential fingerprints
--   first_seen, last_seen
WITH team IN ('', 'unattributed') AS unattributed
SELECT
    count() AS requests,
    countIf(unattributed) AS unattributed_requests,
    if(requests = 0, 0., unattributed_requests / requests) AS unattributed_request_share,
    sum(cost_total) AS cost,
    sumIf(cost_total, unattributed) AS unattributed_cost,
    if(cost = 0, 0., toFloat64(unattributed_cost) / toFloat64(cost)) AS unattributed_cost_share,
    countIf(notEmpty(identity_conflicts)) AS conflict_requests,
    if(requests = 0, 0., conflict_requests / requests) AS conflict_share,
    countIf(team_source = 'header') AS header_team_requests,
    if(requests = 0, 0., header_team_requests / requests) AS header_team_share,
    countIf(pricing_status != 'priced') AS unpriced_requests,
    if(requests = 0, 0., unpriced_requests / requests) AS unpriced_share,
    countIf(usage_source = 'estimated') AS estimated_requests,
    if(requests = 0, 0., estimated_requests / requests) AS estimated_request_share,
    sumIf(cost_total, usage_source = 'estimated') AS estimated_cost,
    if(cost = 0, 0., toFloat64(estimated_cost) / toFloat64(cost)) AS estimated_cost_share,
    countIf(usage_source = 'none' AND policy_outcome = 'allowed') AS unmeasured_requests,
    if(requests = 0, 0., unmeasured_requests / requests) AS unmeasured_share,
    countIf(has(splitByChar(',', toString(usage_note)), 'kong-ai-proxy-zero-output')) AS ai_proxy_zero_output_requests,
    uniqExactIf(team, NOT unattributed) AS teams,
    uniqExactIf(consumer_id, consumer_id != '') AS consumers,
    uniqExactIf(credential_fingerprint, credential_fingerprint != '') AS credentials,
    min(started_at) AS first_seen,
    max(started_at) AS last_seen
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= {start:DateTime64(3, 'UTC')}
  AND started_at < {end:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant = {tenant:String})
