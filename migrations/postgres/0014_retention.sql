-- Retention (docs/retention.md): one row per (citizen, activity, category) the gateway knows,
-- with what starts its clock and where it is in its three phases. Pseudonymous ids only.
CREATE TABLE retention_record (
    subject TEXT NOT NULL,              -- field subject (owner of the data keys)
    activity TEXT NOT NULL,
    category TEXT NOT NULL,
    consent_subject TEXT,               -- for notices and rights holds; dropped on anonymisation
    route TEXT,                         -- the application's route, and the pseudonym it knows
    app_subject TEXT,
    collected_at_us BIGINT NOT NULL,
    last_activity_at_us BIGINT,
    event_at_us BIGINT,                -- case closed, removal from the roll… (reported)
    withdrawn_at_us BIGINT,            -- consent withdrawn
    phase TEXT NOT NULL,                -- active | intermediate | ended | review | kept
    phase_since_us BIGINT NOT NULL,
    end_action TEXT,                    -- destroy | anonymise | archive_review, once done
    notice_deletion_on TEXT,            -- YYYY-MM-DD announced to the citizen, once noticed
    PRIMARY KEY (subject, activity, category)
);
CREATE INDEX retention_record_app ON retention_record (route, app_subject);
-- Application-reported events, once each (idempotent by the application's event id).
CREATE TABLE retention_event (
    route TEXT NOT NULL,
    event_id TEXT NOT NULL,
    activity TEXT NOT NULL,
    event TEXT NOT NULL,
    occurred_at_us BIGINT NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (route, event_id)
);
-- DPO holds: the data of (subject, activity) is skipped by runs while the hold lasts.
CREATE TABLE retention_hold (
    subject TEXT NOT NULL,
    activity TEXT NOT NULL,
    reason TEXT NOT NULL,
    since_us BIGINT NOT NULL,
    PRIMARY KEY (subject, activity)
);
-- Runs: one lease at a time across instances; what each run did, by hashed record id.
CREATE TABLE retention_lease (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    until_us BIGINT NOT NULL
);
CREATE TABLE retention_run_item (
    record_hash TEXT NOT NULL,          -- SHA-256 of subject, activity and category
    step TEXT NOT NULL,                 -- the action taken, with the phase it left
    run_id TEXT NOT NULL,
    activity TEXT NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    journaled BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (record_hash, step)
);
CREATE INDEX retention_run_item_pending ON retention_run_item (journaled);
