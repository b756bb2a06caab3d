-- The breach register (GDPR Art. 33(5); docs/incidents.md). One row per incident; the facts as
-- JSON (categories and approximate numbers, never a person's name), times in Unix microseconds.
CREATE TABLE incident (
    id TEXT PRIMARY KEY NOT NULL,        -- INC-XXXX-XXXX
    facts TEXT NOT NULL,                 -- JSON: incidents::IncidentFacts
    aware_at_us BIGINT NOT NULL,          -- when the controller became aware: the 72 hours start here
    recorded_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX incident_aware ON incident (aware_at_us);
