-- What each application answered when told that an Art. 18 restriction was lifted
-- (`restriction_lifted` notices): kept beside the restriction's own answer, as proof that
-- the application was told (Art. 19).
ALTER TABLE rights_propagation ADD COLUMN lifted_status TEXT;     -- completed | refused | pending | in_progress
ALTER TABLE rights_propagation ADD COLUMN lifted_at_us BIGINT;
