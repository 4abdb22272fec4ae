-- How much of each rollup group was measured: the events whose usage the
-- plugin estimated (usage_source 'estimated': a labelled estimate, never an
-- exact count) with their contracted and list cost, and the answered requests
-- it could not measure at all (usage_source 'none' on an allowed request: their
-- tokens, and so their cost, are missing). Reports, statements, FOCUS exports
-- and readiness show these shares so an estimate is never passed off as a
-- measured bill and an unmeasured answer never as a free one.
--
-- In cluster mode the renderer repeats these column ALTERs on the Distributed
-- tables in front of the shards (aggregator/store/schema.py).
ALTER TABLE {db}.usage_rollup_hourly{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS estimated_events UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS estimated_cost_total Decimal(38, 18) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS estimated_list_cost_total Decimal(38, 18) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS unmeasured_events UInt64 DEFAULT 0;

ALTER TABLE {db}.usage_rollup_daily{local} {on_cluster}
    ADD COLUMN IF NOT EXISTS estimated_events UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS estimated_cost_total Decimal(38, 18) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS estimated_list_cost_total Decimal(38, 18) DEFAULT 0,
    ADD COLUMN IF NOT EXISTS unmeasured_events UInt64 DEFAULT 0;

-- Rollups built before this migration hold 0 in the new columns: mark every
-- clean period dirty (stamped with the store clock, as the writer does), so
-- reports read those periods from raw events until the maintainer has rebuilt
-- them. Periods past the raw retention cannot be rebuilt; the maintainer marks
-- them clean again as they were (their new columns stay 0).
INSERT INTO {db}.rollup_state (grain, period_start, state, version)
SELECT grain, period_start, 'dirty', toUnixTimestamp64Nano(now64(9))
FROM {db}.rollup_state FINAL
WHERE state = 'clean'
