-- The consent ledger (docs/consent.md). Every consent given or withdrawn is first an entry of
-- the hash-chained audit journal; the same transaction copies it here, keyed by the journal
-- sequence number, so the proof outlives the journal's retention window and the current
-- state is one indexed read. Append-only: rows are never updated nor deleted.
CREATE TABLE consent_event (
    seq BIGINT PRIMARY KEY NOT NULL,         -- the journal entry's sequence number
    subject TEXT NOT NULL,                -- the citizen's consent pseudonym
    activity TEXT NOT NULL,
    purpose TEXT NOT NULL,
    given BIGINT NOT NULL,                   -- 1 given, 0 withdrawn
    at_us BIGINT NOT NULL,                   -- event time, Unix microseconds (UTC)
    body TEXT NOT NULL,                   -- the journal entry's canonical body
    hash TEXT NOT NULL                    -- the journal entry's chain hash h(seq)
);
CREATE INDEX consent_event_subject ON consent_event (subject, seq);

-- One-time codes a citizen reads out to an agent (assisted channel): only the SHA-256 of the
-- code is kept, with the pseudonym it stands for.
CREATE TABLE consent_code (
    code_hash TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    expires_at_us BIGINT NOT NULL
);
