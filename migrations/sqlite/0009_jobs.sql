-- The one durable job queue (rights propagation, notices, retention runs, alerts). A job is
-- claimed by one instance at a time through a lease; a lease that runs out (the instance died)
-- makes the job claimable again. Payloads hold pseudonymous ids only, never personal data.
CREATE TABLE job (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    dedup_key TEXT UNIQUE,          -- same key, same job: enqueueing twice is a no-op
    payload TEXT NOT NULL,          -- JSON
    status TEXT NOT NULL,           -- queued | running | done | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at_us INTEGER NOT NULL,     -- not before (Unix microseconds)
    locked_by TEXT,
    locked_until_us INTEGER,
    last_error TEXT,                -- a fixed message, never a value
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);
CREATE INDEX job_due ON job (status, run_at_us);
