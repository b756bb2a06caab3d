-- Field encryption (issue 5). One data key per (subject, processing activity), stored only
-- wrapped by a KEK from the keyring file; the row records which KEK version wrapped it so a
-- rotation can resume where it stopped.
CREATE TABLE guichet_data_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    activity TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (subject, activity)
);
CREATE INDEX guichet_data_keys_by_kek_version ON guichet_data_keys (kek_version);

-- Destroyed data keys (crypto-shredding). Only the opaque key id and the activity: nothing
-- that names the citizen. Also appended to a file outside the store (keys.tombstones_file).
CREATE TABLE guichet_key_tombstones (
    key_id TEXT PRIMARY KEY NOT NULL,
    activity TEXT NOT NULL,
    shredded_at TEXT NOT NULL
);
