-- fan_out: agent runs that fanned out into many model calls. Calls of one run
-- share the W3C trace id of its traceparent header (trace_id), so one trace
-- with hundreds of calls is an agent loop or a runaway orchestration; its
-- cost is the run's cost. Requests without a trace id are not counted.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   min_calls      UInt64   flag traces with at least this many model calls
--   only_flagged   UInt8    1 = only flagged traces
--
-- Columns (one row per trace id):
--   trace_id, tenant, team, app   (team/app: the most frequent in the trace)
--   calls, models (distinct), model_list (up to 10), apps (distinct)
--   input_tokens, output_tokens, cost
--   first_seen, last_seen, duration_s
--   flagged (0/1), reasons
SELECT
    trace_id,
    top_tenant AS tenant,
    top_team AS team,
    top_app AS app,
    calls,
    models,
    model_list,
    apps,
    input_sum AS input_tokens,
    output_sum AS output_tokens,
    cost,
    first_seen,
    last_seen,
    duration_s,
    arrayFilter(r -> r != '', [
        if(calls >= {min_calls:UInt64}, concat(toString(calls), ' calls >= ', toString({min_calls:UInt64})), '')
    ]) AS reasons,
    toUInt8(notEmpty(reasons)) AS flagged
FROM
(
    SELECT
        trace_id,
        topK(1)(tenant)[1] AS top_tenant,
        topK(1)(team)[1] AS top_team,
        topK(1)(app)[1] AS top_app,
        count() AS calls,
        uniqExact(billing_model) AS models,
        arraySlice(arraySort(groupUniqArray(toString(billing_model))), 1, 10) AS model_list,
        uniqExact(app) AS apps,
        sum(input_tokens) AS input_sum,
        sum(output_tokens) AS output_sum,
        sum(cost_total) AS cost,
        min(started_at) AS first_seen,
        max(started_at) AS last_seen,
        dateDiff('millisecond', first_seen, last_seen) / 1000 AS duration_s
    FROM {db:Identifier}.usage_events FINAL
    WHERE started_at >= {start:DateTime64(3, 'UTC')}
      AND started_at < {end:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
      AND trace_id != ''
    GROUP BY trace_id
)
WHERE flagged OR NOT {only_flagged:UInt8}
ORDER BY flagged DESC, calls DESC, trace_id
