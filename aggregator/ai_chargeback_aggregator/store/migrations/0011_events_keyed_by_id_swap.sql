-- Copy the raw events into the id-keyed table of 0010 and put it in place
-- under the name every query uses. The table as it was stays, renamed
-- usage_events_before_0011: drop it once the counts are checked (an empty one,
-- as a fresh install leaves, is dropped at start-up).
--
-- In cluster mode the copy goes through the Distributed tables (every shard),
-- then the shard tables are renamed on every node; the Distributed table
-- usage_events now fronts the new shard tables, and the one 0010 made for the
-- new table (left pointing at a name that no longer exists) is dropped.
INSERT INTO {db}.usage_events_by_id SELECT * FROM {db}.usage_events;

RENAME TABLE {db}.usage_events{local} TO {db}.usage_events_before_0011{local},
             {db}.usage_events_by_id{local} TO {db}.usage_events{local} {on_cluster};

DROP TABLE IF EXISTS {db}.usage_events_by_id {on_cluster}
