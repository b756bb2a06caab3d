-- Data-subject rights requests (GDPR Art. 15-21). People appear only by their pseudonymous
-- subject id; the reference is what the citizen reads out on the phone.
CREATE TABLE rights_request (
    id TEXT PRIMARY KEY NOT NULL,       -- reference, e.g. DR-7K3M-Q9XP
    subject TEXT NOT NULL,              -- pseudonymous subject id (as in the consent ledger)
    activity TEXT,                      -- one processing activity, or NULL for all of them
    right_kind TEXT NOT NULL,           -- access | portability | rectification | erasure | restriction | objection
    channel TEXT NOT NULL,              -- online | counter | phone | post | email
    agent TEXT,                         -- the agent who recorded it on an assisted channel
    identity TEXT NOT NULL,             -- JSON: how identity was established (never a document copy)
    status TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    received_on TEXT NOT NULL,          -- local calendar date of receipt, YYYY-MM-DD
    paused_days INTEGER NOT NULL DEFAULT 0,
    paused_since TEXT,                  -- local date an identity doubt paused the clock
    extensions TEXT NOT NULL,           -- JSON list of {months, reason, notice_sent_on}
    answer TEXT,                        -- JSON: the refusal or the answer's summary
    updated_at_us INTEGER NOT NULL
);
CREATE INDEX rights_request_subject ON rights_request (subject, received_at_us);
CREATE INDEX rights_request_status ON rights_request (status, received_at_us);
