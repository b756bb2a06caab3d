-- Integrity at rest (issue 12, docs/audit.md "Threat model").
--
-- Each consent ledger row is signed with the checkpoint key (Ed25519 over the row's journal
-- sequence number, chain hash and body): a row edited by someone who can write the store but
-- not read the key no longer verifies, and enforcement refuses it. Rows written before this
-- migration have no signature: they are checked against their journal entry instead.
ALTER TABLE consent_event ADD COLUMN key_id TEXT;
ALTER TABLE consent_event ADD COLUMN signature TEXT;

-- The journal, its checkpoints and the consent ledger are append-only: the database refuses
-- UPDATE, DELETE and TRUNCATE on them, except inside the retention path, which sets
-- `SET LOCAL guichet.retention = 'on'` in its own transaction. This stops mistakes and naive
-- edits; a writer with full SQL access can set it too, which is why `guichet audit verify`
-- and the signatures exist.
CREATE FUNCTION guichet_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('guichet.retention', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: rows are never changed, and removed only by retention', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry
    FOR EACH ROW EXECUTE FUNCTION guichet_append_only();
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry
    FOR EACH STATEMENT EXECUTE FUNCTION guichet_append_only();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION guichet_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION guichet_append_only();
CREATE TRIGGER consent_event_append_only BEFORE UPDATE OR DELETE ON consent_event
    FOR EACH ROW EXECUTE FUNCTION guichet_append_only();
CREATE TRIGGER consent_event_no_truncate BEFORE TRUNCATE ON consent_event
    FOR EACH STATEMENT EXECUTE FUNCTION guichet_append_only();
