-- Integrity at rest (issue 12, docs/audit.md "Threat model").
--
-- Each consent ledger row is signed with the checkpoint key (Ed25519 over the row's journal
-- sequence number, chain hash and body): a row edited by someone who can write the store but
-- not read the key no longer verifies, and enforcement refuses it. Rows written before this
-- migration have no signature: they are checked against their journal entry instead.
ALTER TABLE consent_event ADD COLUMN key_id TEXT;
ALTER TABLE consent_event ADD COLUMN signature TEXT;

-- The journal, its checkpoints and the consent ledger are append-only: the database refuses
-- UPDATE and DELETE on them, except inside the retention path, which inserts the one row of
-- `retention_gate` at the start of its transaction and deletes it before committing (no other
-- connection ever sees it). This stops mistakes and naive edits; a writer with full SQL access
-- can open the gate too, which is why `guichet audit verify` and the signatures exist.
CREATE TABLE retention_gate (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1)
);

CREATE TRIGGER audit_entry_append_only_update BEFORE UPDATE ON audit_entry
WHEN NOT EXISTS (SELECT 1 FROM retention_gate)
BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: rows are never changed'); END;
CREATE TRIGGER audit_entry_append_only_delete BEFORE DELETE ON audit_entry
WHEN NOT EXISTS (SELECT 1 FROM retention_gate)
BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: rows are removed only by retention'); END;

CREATE TRIGGER audit_checkpoint_append_only_update BEFORE UPDATE ON audit_checkpoint
WHEN NOT EXISTS (SELECT 1 FROM retention_gate)
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only: rows are never changed'); END;
CREATE TRIGGER audit_checkpoint_append_only_delete BEFORE DELETE ON audit_checkpoint
WHEN NOT EXISTS (SELECT 1 FROM retention_gate)
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only: rows are removed only by retention'); END;

CREATE TRIGGER consent_event_append_only_update BEFORE UPDATE ON consent_event
WHEN NOT EXISTS (SELECT 1 FROM retention_gate)
BEGIN SELECT RAISE(ABORT, 'consent_event is append-only: rows are never changed'); END;
CREATE TRIGGER consent_event_append_only_delete BEFORE DELETE ON consent_event
WHEN NOT EXISTS (SELECT 1 FROM retention_gate)
BEGIN SELECT RAISE(ABORT, 'consent_event is append-only: rows are removed only by retention'); END;
