-- top_apps: the apps that cost the most in a period, with their share of the total.
--
-- Reads usage_events FINAL (exact: duplicates count once). An app belongs to
-- one tenant/team in practice; the row lists every team it was seen under.
--
-- Parameters:
--   db      Identifier              database holding usage_events
--   start   DateTime64(3, 'UTC')    inclusive
--   end     DateTime64(3, 'UTC')    exclusive
--   limit   UInt32                  how many apps
--
-- Columns (most expensive first):
--   app, teams (sorted list), events, tokens (input + output), cost (contracted USD),
--   cost_share (of the period's total cost, Float64 for reading only), unpriced_events
SELECT
    app,
    arraySort(groupUniqArray(team)) AS teams,
    count() AS events,
    sum(input_tokens + output_tokens) AS tokens,
    sum(cost_total) AS cost,
    if(total_cost = 0, 0., toFloat64(cost) / toFloat64(total_cost)) AS cost_share,
    countIf(pricing_status = 'unpriced') AS unpriced_events
FROM {db:Identifier}.usage_events FINAL
CROSS JOIN
(
    SELECT sum(cost_total) AS total_cost
    FROM {db:Identifier}.usage_events FINAL
    WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
) AS totals
WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
GROUP BY app, total_cost
ORDER BY cost DESC, app
LIMIT {limit:UInt32}
