-- daily_trend: events, tokens and cost per UTC day, every day of the period
-- (days without traffic show zeros, so a chart has no gaps).
--
-- Reads usage_events FINAL. Optional tenant filter: '' means every tenant.
-- A day without usage finds no row to join: the LEFT JOIN gives it the
-- columns' defaults, zeros (no SETTINGS: POST /v1/sql refuses them).
--
-- Parameters:
--   db      Identifier    database holding usage_events
--   start   Date          first day (inclusive)
--   end     Date          last day (exclusive)
--   tenant  String        one tenant, or '' for all
--
-- Columns (by day):
--   day, events, input_tokens, output_tokens, cost, list_cost, unpriced_events
SELECT
    days.day AS day,
    usage.events AS events,
    usage.input_tokens AS input_tokens,
    usage.output_tokens AS output_tokens,
    usage.cost AS cost,
    usage.list_cost AS list_cost,
    usage.unpriced_events AS unpriced_events
FROM
(
    SELECT {start:Date} + number AS day
    FROM numbers(toUInt64(greatest(0, dateDiff('day', {start:Date}, {end:Date}))))
) AS days
LEFT JOIN
(
    SELECT
        toDate(started_at) AS day,
        count() AS events,
        sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens,
        sum(cost_total) AS cost,
        sum(list_cost_total) AS list_cost,
        countIf(pricing_status = 'unpriced') AS unpriced_events
    FROM {db:Identifier}.usage_events FINAL
    WHERE started_at >= toDateTime64({start:Date}, 3, 'UTC') AND started_at < toDateTime64({end:Date}, 3, 'UTC')
      AND ({tenant:String} = '' OR tenant = {tenant:String})
    GROUP BY day
) AS usage ON usage.day = days.day
ORDER BY day
