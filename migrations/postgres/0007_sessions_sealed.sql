-- Sessions keep their identity claims and ID token sealed under a key derived from the
-- browser's cookie (auth::sealed) from now on. Rows written before hold them in clear: they
-- are deleted (their holders sign in again once), so no name, birth date or e-mail stays in
-- the store. An ended session's row is deleted too, not marked: `revoked_at` stays empty.
DELETE FROM auth_sessions;
