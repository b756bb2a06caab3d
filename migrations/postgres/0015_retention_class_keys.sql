-- Data keys per retention class (issue 15): one key per (subject, activity, class), so one
-- category can be shredded when its retention ends while the others of the activity stay.
-- Keys created before this migration keep class '' (the activity's legacy key): they open
-- the `gch1.` tokens sealed under them and are never used to seal again.
ALTER TABLE guichet_data_keys ADD COLUMN class TEXT NOT NULL DEFAULT '';
ALTER TABLE guichet_data_keys DROP CONSTRAINT guichet_data_keys_subject_activity_key;
ALTER TABLE guichet_data_keys ADD CONSTRAINT guichet_data_keys_subject_activity_class_key
    UNIQUE (subject, activity, class);
