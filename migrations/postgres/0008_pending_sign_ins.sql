-- Sign-ins under way (issue 12): the return path (with its query) and the PKCE verifier are
-- kept sealed with a key derived from the `state`, which the store never holds (only its
-- SHA-256), and each names the provider it started with (FranceConnect, FranceConnect+…).
-- Rows written before this change held the return path in clear: they are dropped (a sign-in
-- under way during the upgrade is started again).
DELETE FROM auth_pending_logins;
ALTER TABLE auth_pending_logins RENAME COLUMN return_to TO sealed_return_to;
ALTER TABLE auth_pending_logins RENAME COLUMN pkce_verifier TO sealed_pkce_verifier;
ALTER TABLE auth_pending_logins ADD COLUMN provider TEXT NOT NULL DEFAULT '';
