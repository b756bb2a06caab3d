-- The citizen's per-sector pseudonyms (field and consent subjects of each sector other than
-- `general`), recorded with the request's pseudonyms so that a request filed at the counter
-- reaches every sector's records (docs/cryptography.md, "Sector pseudonyms"). JSON:
-- sector slug -> {"field": …, "consent": …}. Rows recorded before sectors existed hold '{}'.
ALTER TABLE rights_subject ADD COLUMN sectors TEXT NOT NULL DEFAULT '{}';
