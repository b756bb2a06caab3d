-- Elimination lists (bordereaux d'élimination, docs/retention.md): public records at the end
-- of their DUA wait here for the archivist's visa (Code du patrimoine L212-2, R212-14).
-- One list per run and producing service; one line per record, on one list only.
CREATE TABLE elimination_list (
    reference TEXT PRIMARY KEY NOT NULL,    -- BE-<run time>[-n]
    run_id TEXT NOT NULL,
    producing_service TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    visa_by TEXT,                           -- the archivist (agent id), once the visa is given
    visa_at_us INTEGER,
    visa_reference TEXT,                    -- the archives service's own reference, if any
    UNIQUE (run_id, producing_service)
);
CREATE TABLE elimination_line (
    reference TEXT NOT NULL REFERENCES elimination_list (reference),
    subject TEXT NOT NULL,                  -- field subject (pseudonymous)
    activity TEXT NOT NULL,
    category TEXT NOT NULL,
    record_hash TEXT NOT NULL,              -- as in the run evidence
    first_at_us INTEGER NOT NULL,           -- extreme dates of the file
    last_at_us INTEGER NOT NULL,
    decision TEXT,                          -- approved | refused, once decided
    reason TEXT,                            -- why a line was refused
    decided_by TEXT,
    decided_at_us INTEGER,
    destroyed_at_us INTEGER,                -- set when an approved line was destroyed
    PRIMARY KEY (subject, activity, category)
);
CREATE INDEX elimination_line_list ON elimination_line (reference);
