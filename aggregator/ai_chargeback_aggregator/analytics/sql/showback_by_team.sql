-- showback_by_team: usage and cost per team for a period, from the raw events.
--
-- Exact and up to the minute: reads usage_events FINAL (a duplicate delivery
-- or a repriced event counts once, at its latest price). Team '' and
-- 'unattributed' (what the plugin records when no team resolves) are one
-- line, team ''. Costs are Decimal(38, 18) USD; unpriced usage is not in them
-- and is counted in unpriced_events (never shown as $0).
--
-- Parameters:
--   db      Identifier              database holding usage_events
--   start   DateTime64(3, 'UTC')    inclusive
--   end     DateTime64(3, 'UTC')    exclusive
--
-- Columns (one row per team, most expensive first):
--   team, events, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
--   list_cost (public price), cost (contracted: what we pay), unpriced_events
SELECT
    if(team IN ('', 'unattributed'), '', team) AS team,
    count() AS events,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(list_cost_total) AS list_cost,
    sum(cost_total) AS cost,
    countIf(pricing_status = 'unpriced') AS unpriced_events
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
GROUP BY team
ORDER BY cost DESC, team
