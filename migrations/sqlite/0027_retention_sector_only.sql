-- Retention records carry only the sector's pseudonym (issue 17, item 4): the gateway-wide
-- consent subject beside it joined a citizen's sectors. Pending rights requests and the
-- citizen to tell before a deletion are found through the rights subjects the citizen recorded
-- (`rights_subject_field`, below), never through the record. The values are cleared before
-- the column goes, so no copy stays in the table's pages.
UPDATE retention_record SET consent_subject = NULL;
ALTER TABLE retention_record DROP COLUMN consent_subject;
-- Each field subject (one per sector) the citizen recorded with their rights subjects, and the
-- gateway-wide subject it belongs to: the per-sector lookup of `rights_subject.sectors`, part
-- of the same row (written and replaced with it). Pseudonymous ids only.
CREATE TABLE rights_subject_field (
    field_subject TEXT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL
);
CREATE INDEX rights_subject_field_subject ON rights_subject_field (subject);
INSERT INTO rights_subject_field (field_subject, subject)
    SELECT field_subject, subject FROM rights_subject WHERE true
    ON CONFLICT (field_subject) DO NOTHING;
INSERT INTO rights_subject_field (field_subject, subject)
    SELECT json_extract(s.value, '$.field'), r.subject FROM rights_subject r, json_each(r.sectors) s
    WHERE json_extract(s.value, '$.field') IS NOT NULL
    ON CONFLICT (field_subject) DO NOTHING;
