-- Sign-in (issue 3). The browser holds a random session id; only its SHA-256 is stored, so a
-- copy of this table cannot be replayed as cookies.
CREATE TABLE auth_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,              -- 'citizen' or 'agent'
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,           -- the provider's pairwise sub: the account key
    provider_sid TEXT,               -- the provider's session id, for back-channel logout
    acr TEXT NOT NULL,
    claims TEXT NOT NULL,            -- JSON object of validated identity claims
    roles TEXT NOT NULL,             -- JSON array of agent roles
    id_token TEXT NOT NULL,          -- kept for id_token_hint at logout
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,          -- absolute timeout
    revoked_at TEXT
);
CREATE INDEX auth_sessions_subject ON auth_sessions (issuer, subject);
CREATE INDEX auth_sessions_sid ON auth_sessions (issuer, provider_sid);

-- Sign-ins under way: what the callback must find again (single use: taken by DELETE).
CREATE TABLE auth_pending_logins (
    state_hash TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT,
    return_to TEXT NOT NULL,
    acr TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Logouts under way: the state sent to the provider's end_session_endpoint.
CREATE TABLE auth_pending_logouts (
    state_hash TEXT PRIMARY KEY NOT NULL,
    expires_at TEXT NOT NULL
);
