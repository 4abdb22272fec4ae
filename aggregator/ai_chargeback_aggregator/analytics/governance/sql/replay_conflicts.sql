-- replay_conflicts: deliveries of an event id that was already stored, whose
-- content differed from the stored event (another team, other token counts,
-- another time...). The aggregator keeps the stored version (that is what every
-- report bills) and sets the replay aside in event_conflicts; nothing of it is
-- billed. A conflict means two versions of one request's usage exist: a sender
-- re-sending edited events, two gateways minting one id, or tampering. One row
-- per distinct replayed content, next to the version that stands.
--
-- The period is the time the event id carries (UUIDv7): the stored event's time.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql (tenant: either version's)
--
-- Columns:
--   event_id, detected_at, sender_id, batch_id   the replay and where it came from
--   differs                  fields that differ among those compared here ('other' when none of them does)
--   stored_tenant, replay_tenant, stored_team, replay_team, stored_app, replay_app,
--   stored_model, replay_model, stored_input_tokens, replay_input_tokens,
--   stored_output_tokens, replay_output_tokens, stored_started_at, replay_started_at
--   billed_cost              the stored version's cost (what is billed)
--   flagged                  always 1: every conflict is a finding
SELECT
    toString(c.event_id) AS event_id,
    c.detected_at AS detected_at,
    c.sender_id AS sender_id,
    c.batch_id AS batch_id,
    arrayFilter(x -> x != '', [
        if(c.tenant != s.tenant, 'tenant', ''), if(c.team != s.team, 'team', ''), if(c.app != s.app, 'app', ''),
        if(c.provider != s.provider, 'provider', ''), if(c.model != s.model, 'model', ''),
        if(c.input_tokens != s.input_tokens, 'input_tokens', ''), if(c.output_tokens != s.output_tokens, 'output_tokens', ''),
        if(c.started_at != s.started_at, 'started_at', '')
    ]) AS compared_differs,
    if(empty(compared_differs), ['other'], compared_differs) AS differs,
    s.tenant AS stored_tenant, c.tenant AS replay_tenant,
    s.team AS stored_team, c.team AS replay_team,
    s.app AS stored_app, c.app AS replay_app,
    s.model AS stored_model, c.model AS replay_model,
    s.input_tokens AS stored_input_tokens, c.input_tokens AS replay_input_tokens,
    s.output_tokens AS stored_output_tokens, c.output_tokens AS replay_output_tokens,
    s.started_at AS stored_started_at, c.started_at AS replay_started_at,
    s.cost_total AS billed_cost,
    1 AS flagged
FROM {db:Identifier}.event_conflicts AS c FINAL
LEFT JOIN (
    SELECT event_id, tenant, team, app, provider, if(served_model != '', served_model, requested_model) AS model,
           input_tokens, output_tokens, started_at, cost_total
    FROM {db:Identifier}.usage_events FINAL
    WHERE event_id IN (
        SELECT event_id FROM {db:Identifier}.event_conflicts
        WHERE UUIDv7ToDateTime(event_id) >= {start:DateTime64(3, 'UTC')} AND UUIDv7ToDateTime(event_id) < {end:DateTime64(3, 'UTC')}
    )
) AS s ON s.event_id = c.event_id
WHERE UUIDv7ToDateTime(c.event_id) >= {start:DateTime64(3, 'UTC')}
  AND UUIDv7ToDateTime(c.event_id) < {end:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR c.tenant = {tenant:String} OR s.tenant = {tenant:String})
ORDER BY detected_at, event_id, c.content_hash
