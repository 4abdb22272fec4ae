-- delivery_gaps: what the period's figures lack, in one row: events quarantined
-- (broke the contract, unbilled), events gateways reported lost (queue or spool
-- overflow), and replays that conflicted with stored events. The readiness
-- verdict judges these next to the attribution summary.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql (loss records carry
--                            no tenant: with a tenant they are not counted)
--
-- Columns:
--   quarantined_events, lost_events, replay_conflicts
SELECT
    (SELECT count() FROM {db:Identifier}.quarantined_events FINAL
     WHERE occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}
       AND ({tenant:String} = '' OR tenant = {tenant:String})) AS quarantined_events,
    (SELECT toUInt64(sum(events_lost)) FROM {db:Identifier}.delivery_losses FINAL
     WHERE first_lost_at < {end:DateTime64(3, 'UTC')} AND last_lost_at >= {start:DateTime64(3, 'UTC')}
       AND {tenant:String} = '') AS lost_events,
    (SELECT count() FROM {db:Identifier}.event_conflicts FINAL
     WHERE UUIDv7ToDateTime(event_id) >= {start:DateTime64(3, 'UTC')} AND UUIDv7ToDateTime(event_id) < {end:DateTime64(3, 'UTC')}
       AND ({tenant:String} = '' OR tenant = {tenant:String})) AS replay_conflicts
