-- Data keys per retention class (issue 15): one key per (subject, activity, class), so one
-- category can be shredded when its retention ends while the others of the activity stay.
-- Keys created before this migration keep class '' (the activity's legacy key): they open
-- the `gch1.` tokens sealed under them and are never used to seal again.
-- SQLite cannot change a table's UNIQUE constraint in place: the table is rebuilt.
CREATE TABLE guichet_data_keys_new (
    key_id TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    activity TEXT NOT NULL,
    class TEXT NOT NULL DEFAULT '',
    kek_version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (subject, activity, class)
);
INSERT INTO guichet_data_keys_new (key_id, subject, activity, class, kek_version, wrapped, created_at)
    SELECT key_id, subject, activity, '', kek_version, wrapped, created_at FROM guichet_data_keys;
DROP TABLE guichet_data_keys;
ALTER TABLE guichet_data_keys_new RENAME TO guichet_data_keys;
CREATE INDEX guichet_data_keys_by_kek_version ON guichet_data_keys (kek_version);
