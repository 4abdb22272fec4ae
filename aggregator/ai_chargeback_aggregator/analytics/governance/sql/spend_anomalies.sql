-- spend_anomalies: days on which a team/app spent far more than its trailing
-- baseline. The baseline of a day is the median daily cost of the app over
-- the `baseline_days` days before it, and its spread the MAD (median absolute
-- deviation); both ignore the spikes they are meant to expose, unlike a mean
-- and standard deviation. Only days with traffic are in the baseline, so a
-- weekday-only app is compared with its weekdays.
--
-- A day is flagged when all hold:
--   * the baseline has at least `min_baseline_days` days,
--   * the day cost at least `min_daily_cost`,
--   * cost / median >= `min_factor`,
--   * the modified z-score 0.6745 * (cost - median) / MAD >= `min_robust_z`
--     (skipped when MAD is 0: a perfectly steady app is judged by the factor).
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   baseline_days       UInt32    trailing window, in days (default 14)
--   min_baseline_days   UInt32    days with traffic needed in the window (default 7)
--   min_factor          Float64   (default 3)
--   min_robust_z        Float64   (default 3.5, the Iglewicz-Hoaglin cut-off)
--   min_daily_cost      Float64   USD (default 1)
--   only_flagged        UInt8     1 = only flagged days
--
-- Columns (one row per tenant x team x app x day in the period):
--   tenant, team, app, day, cost, requests, tokens
--   baseline_days, baseline_median, baseline_mad
--   factor (cost / median; NULL without a baseline), robust_z (NULL when MAD is 0)
--   flagged (0/1), reasons
WITH
    daily AS
    (
        SELECT
            tenant,
            team,
            app,
            toDate(started_at) AS day,
            sum(cost_total) AS cost,
            count() AS requests,
            sum(input_tokens + output_tokens) AS tokens
        FROM {db:Identifier}.usage_events FINAL
        WHERE started_at >= {start:DateTime64(3, 'UTC')} - toIntervalDay({baseline_days:UInt32})
          AND started_at < {end:DateTime64(3, 'UTC')}
          AND ({tenant:String} = '' OR tenant = {tenant:String})
        GROUP BY tenant, team, app, day
    ),
    windows AS
    (
        SELECT
            tenant,
            team,
            app,
            day,
            cost,
            requests,
            tokens,
            groupArray(toFloat64(cost)) OVER (
                PARTITION BY tenant, team, app
                ORDER BY toUInt32(day)
                RANGE BETWEEN {baseline_days:UInt32} PRECEDING AND 1 PRECEDING
            ) AS history
        FROM daily
    )
SELECT
    tenant,
    team,
    app,
    day,
    cost,
    requests,
    tokens,
    length(history) AS baseline_days,
    if(empty(history), NULL, arrayReduce('quantileExactInclusive(0.5)', history)) AS baseline_median,
    if(empty(history), NULL, arrayReduce('quantileExactInclusive(0.5)', arrayMap(x -> abs(x - assumeNotNull(baseline_median)), history))) AS baseline_mad,
    if(baseline_median > 0, toFloat64(cost) / baseline_median, NULL) AS factor,
    if(baseline_mad > 0, 0.6745 * (toFloat64(cost) - baseline_median) / baseline_mad, NULL) AS robust_z,
    arrayFilter(r -> r != '', [
        if(baseline_days >= {min_baseline_days:UInt32}
               AND toFloat64(cost) >= {min_daily_cost:Float64}
               AND ifNull(factor >= {min_factor:Float64}, 0)
               AND (robust_z IS NULL OR robust_z >= {min_robust_z:Float64}),
           concat('cost ', toString(round(toFloat64(cost), 2)), ' = ', toString(round(assumeNotNull(factor), 1)),
                  'x median ', toString(round(assumeNotNull(baseline_median), 2)),
                  if(robust_z IS NULL, '', concat(', robust z ', toString(round(assumeNotNull(robust_z), 1))))), '')
    ]) AS reasons,
    toUInt8(notEmpty(reasons)) AS flagged
FROM windows
WHERE day >= toDate({start:DateTime64(3, 'UTC')})
  AND toDateTime(day, 'UTC') < {end:DateTime64(3, 'UTC')}
  AND (flagged OR NOT {only_flagged:UInt8})
ORDER BY flagged DESC, factor DESC, tenant, team, app, day
