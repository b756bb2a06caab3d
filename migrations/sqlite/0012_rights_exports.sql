-- Access and portability exports (docs/rights.md, "Exports"). The archive is kept only
-- encrypted under a key derived from the download token, which the store never holds (only
-- its SHA-256): a copy of the database alone reveals nothing of the archive. Rows are
-- deleted once expired.
CREATE TABLE rights_export (
    id TEXT PRIMARY KEY NOT NULL,         -- random export id
    request_id TEXT NOT NULL,             -- the rights request (rights_request.id)
    subject TEXT NOT NULL,                -- pseudonymous subject id (as in rights_request)
    field_subject TEXT,                   -- the subject owning the citizen's encrypted fields
    session_hash TEXT NOT NULL,           -- SHA-256 of the session cookie the link is bound to
    token_hash TEXT NOT NULL UNIQUE,      -- SHA-256 of the download token
    sealed BLOB NOT NULL,               -- nonce || AES-256-GCM(archive), key from the token
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    downloads BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rights_export_request ON rights_export (request_id, created_at_us);
CREATE INDEX rights_export_expiry ON rights_export (expires_at_us);
