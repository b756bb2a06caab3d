-- Facts about this installation (schema-independent key/value pairs).
CREATE TABLE guichet_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
