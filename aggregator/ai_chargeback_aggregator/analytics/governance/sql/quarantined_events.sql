-- quarantined_events: events a gateway sent that could not be stored as sent
-- because they broke the event contract (ai_chargeback_proto/limits.py: a count
-- out of range, a malformed id, a time outside the accepted window...). Each is
-- kept with the raw event and the reason, acked as quarantined, and never
-- billed: their usage is missing from every report until a fixed event is sent.
-- One row per broken field x sender x tenant/team/app, with an example.
--
-- The period is when the event says it started (when it received, if that is
-- not a plausible time).
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--
-- Columns:
--   field                the contract field that broke its rule
--   sender_id, tenant, team, app
--   events               distinct quarantined events (id x content)
--   input_tokens, output_tokens   as sent (unbilled)
--   example_event_id, example_reason
--   first_seen, last_seen
--   flagged              always 1: every quarantined event is a finding
SELECT
    field,
    sender_id,
    tenant,
    team,
    app,
    count() AS events,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    any(event_id) AS example_event_id,
    any(reason) AS example_reason,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen,
    1 AS flagged
FROM {db:Identifier}.quarantined_events FINAL
WHERE occurred_at >= {start:DateTime64(3, 'UTC')}
  AND occurred_at < {end:DateTime64(3, 'UTC')}
  AND ({tenant:String} = '' OR tenant = {tenant:String})
GROUP BY field, sender_id, tenant, team, app
ORDER BY events DESC, field, sender_id, tenant, team, app
