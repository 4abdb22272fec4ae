-- month_over_month: each team's cost in a month against the month before.
--
-- Reads usage_events FINAL for both months (UTC calendar months). Teams seen
-- in either month appear; change_pct is NULL when the previous month is zero.
-- Team '' stands for unattributed ('' or 'unattributed' in the events).
--
-- Parameters:
--   db      Identifier    database holding usage_events
--   month   Date          any day of the month to compare (its month is used)
--
-- Columns (largest increase first):
--   team, cost (this month), previous_cost, change (Decimal USD), change_pct (Float64),
--   events, previous_events
SELECT
    if(team IN ('', 'unattributed'), '', team) AS team,
    sumIf(cost_total, toStartOfMonth(started_at) = toStartOfMonth({month:Date})) AS cost,
    sumIf(cost_total, toStartOfMonth(started_at) = addMonths(toStartOfMonth({month:Date}), -1)) AS previous_cost,
    cost - previous_cost AS change,
    if(previous_cost = 0, NULL, 100. * toFloat64(change) / toFloat64(previous_cost)) AS change_pct,
    countIf(toStartOfMonth(started_at) = toStartOfMonth({month:Date})) AS events,
    countIf(toStartOfMonth(started_at) = addMonths(toStartOfMonth({month:Date}), -1)) AS previous_events
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= toDateTime64(addMonths(toStartOfMonth({month:Date}), -1), 3, 'UTC')
  AND started_at < toDateTime64(addMonths(toStartOfMonth({month:Date}), 1), 3, 'UTC')
GROUP BY team
ORDER BY change DESC, team
