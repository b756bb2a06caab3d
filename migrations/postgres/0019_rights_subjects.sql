-- The pseudonyms a rights request is carried under, recorded while the citizen is signed in
-- (rights API, counter code): an agent filing on their behalf has no session to derive them
-- from. Keyed by the consent-ledger subject; pseudonymous ids only.
CREATE TABLE rights_subject (
    subject TEXT PRIMARY KEY NOT NULL,  -- consent-ledger subject (what a counter code stands for)
    field_subject TEXT NOT NULL,        -- owner of the citizen's sealed fields (data keys)
    routes TEXT NOT NULL,               -- JSON: route name -> the pseudonym its application knows
    updated_at_us BIGINT NOT NULL
);
