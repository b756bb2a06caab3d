-- The tamper-evident audit journal (docs/audit.md). Append-only: rows are only ever inserted,
-- and deleted by retention up to a signed checkpoint.
CREATE TABLE audit_entry (
    seq BIGINT PRIMARY KEY NOT NULL,      -- 1, 2, 3… without gaps
    at_us BIGINT NOT NULL,                -- event time, Unix microseconds (UTC)
    operation TEXT NOT NULL,               -- copy of the body's operation, for queries
    subject TEXT,                          -- copy of the body's pseudonymous subject id
    body TEXT NOT NULL,                    -- canonical JSON of the event (what is hashed)
    hash TEXT NOT NULL                     -- h(seq), lowercase hex
);
CREATE INDEX audit_entry_at ON audit_entry (at_us);
CREATE INDEX audit_entry_subject ON audit_entry (subject, seq);

CREATE TABLE audit_checkpoint (
    number BIGINT PRIMARY KEY NOT NULL,   -- 1, 2, 3…
    seq BIGINT NOT NULL,                  -- last entry covered
    hash TEXT NOT NULL,                    -- h(seq)
    at_us BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL                -- Ed25519, lowercase hex
);
CREATE INDEX audit_checkpoint_seq ON audit_checkpoint (seq);

-- One row: the end of the chain, locked by every append so that writers (threads or
-- instances) extend it one after the other; and the anchor left by the last pruning.
CREATE TABLE audit_head (
    id SMALLINT PRIMARY KEY NOT NULL CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    checkpoint_number BIGINT NOT NULL,
    checkpoint_seq BIGINT NOT NULL,
    checkpoint_at_us BIGINT NOT NULL,
    anchor_seq BIGINT NOT NULL,
    anchor_hash TEXT NOT NULL
);
-- h(0) = SHA-256("guichet-audit-v1-genesis")
INSERT INTO audit_head VALUES (1, 0, '8d66cdacac43a467eb82603d5f57b1a1e5e774a6630fa25cffb380f1a254092c', 0, 0, 0, 0, '8d66cdacac43a467eb82603d5f57b1a1e5e774a6630fa25cffb380f1a254092c');
