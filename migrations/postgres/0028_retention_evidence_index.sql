-- A run's evidence is read page by page in the order (activity, category, action, record
-- hash, step) among the steps not yet journaled. With an index on `journaled` alone, each
-- page sorted every pending step again: quadratic in a large run (issue 15, item 10). This
-- index serves the order and the "after the last row read" range directly.
DROP INDEX retention_run_item_pending;
CREATE INDEX retention_run_item_evidence
    ON retention_run_item (journaled, activity, category, action, record_hash, step);
