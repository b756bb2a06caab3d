-- Rights requests reaching the applications (Art. 19), and the marks rights leave on a
-- (citizen, activity). People appear only by pseudonymous ids.
CREATE TABLE rights_propagation (
    request_id TEXT NOT NULL,           -- rights_request.id
    activity TEXT NOT NULL,             -- processing activity (policy id)
    route TEXT,                         -- configured route whose pseudonym the application knows
    app_subject TEXT,                   -- that pseudonym (what the application receives)
    field_subject TEXT,                 -- owner of the citizen's sealed fields (data keys)
    state TEXT NOT NULL,                -- sending | manual | answered
    status TEXT,                        -- the application's status: pending | in_progress | completed | refused
    reason TEXT,                        -- its reason, plain French
    records TEXT,                       -- JSON: its records (access, portability)
    corrections TEXT,                   -- JSON: rectification, field -> sealed gch1. token
    created_at_us INTEGER NOT NULL,
    answered_at_us INTEGER,
    PRIMARY KEY (request_id, activity)
);
CREATE INDEX rights_propagation_state ON rights_propagation (state, created_at_us);

CREATE TABLE rights_mark (
    subject TEXT NOT NULL,              -- field subject (owner of the data keys)
    activity TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- restricted | withdrawn:<purpose>
    since_us INTEGER NOT NULL,
    PRIMARY KEY (subject, activity, kind)
);
