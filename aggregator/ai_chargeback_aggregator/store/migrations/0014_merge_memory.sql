-- Merges in bounded memory. usage_events has over 80 columns; a horizontal merge
-- reads and writes all of them at once, with buffers for each, which made the
-- embedded engine's memory swing by 100+ MB every few inserts. A vertical merge
-- writes the key columns first, then the others one at a time.
ALTER TABLE {db}.usage_events{local} {on_cluster}
    MODIFY SETTING vertical_merge_algorithm_min_rows_to_activate = 1,
                   vertical_merge_algorithm_min_columns_to_activate = 1
