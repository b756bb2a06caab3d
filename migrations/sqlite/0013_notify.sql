-- Notices to citizens (docs/notify.md). A citizen appears by their pseudonymous subject id;
-- the one e-mail address kept per citizen is in notify_contact, never in a message or a job.
CREATE TABLE notify_contact (
    subject TEXT PRIMARY KEY NOT NULL,  -- pseudonymous subject id (as in the consent ledger)
    address TEXT NOT NULL,              -- where notices go; never forwarded, never logged
    source TEXT NOT NULL,               -- identity_provider | given
    updated_at_us INTEGER NOT NULL
);
CREATE TABLE notice_message (
    id TEXT PRIMARY KEY NOT NULL,       -- digest of what the notice is about: one message per event
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- request_received | deadline_extended | answer_ready | retention | consent_receipt
    notice TEXT NOT NULL,               -- JSON: references, dates and labels only
    status TEXT NOT NULL,               -- queued | sent | undeliverable
    created_at_us INTEGER NOT NULL,
    sent_at_us INTEGER
);
CREATE INDEX notice_message_subject ON notice_message (subject, created_at_us);
