//! Sign-in sessions and the sign-ins and logouts under way. Ids arrive here already hashed:
//! the store never sees a value a browser could present.

use time::OffsetDateTime;

use super::{Store, StoreError};

/// One session as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id_hash: String,
    pub kind: String,
    pub issuer: String,
    pub subject: String,
    pub provider_sid: Option<String>,
    pub acr: String,
    pub claims: String,
    pub roles: String,
    pub id_token: String,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A sign-in under way. The return path and the PKCE verifier arrive sealed (`auth::pending`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingLogin {
    pub state_hash: String,
    pub kind: String,
    /// The name of the provider the sign-in went to.
    pub provider: String,
    pub nonce: String,
    pub sealed_pkce_verifier: Option<String>,
    pub sealed_return_to: String,
    pub acr: String,
    pub expires_at: OffsetDateTime,
}

pub struct Sessions<'a> {
    store: &'a Store,
}

const SESSION_COLUMNS: &str = "id_hash, kind, issuer, subject, provider_sid, acr, claims, roles, id_token, \
                               created_at, last_seen_at, expires_at, revoked_at";

impl<'a> Sessions<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    pub async fn insert(&self, s: &SessionRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO auth_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        with_pool!(self.store.db(), p => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&s.id_hash).bind(&s.kind).bind(&s.issuer).bind(&s.subject).bind(&s.provider_sid)
            .bind(&s.acr).bind(&s.claims).bind(&s.roles).bind(&s.id_token)
            .bind(s.created_at).bind(s.last_seen_at).bind(s.expires_at).bind(s.revoked_at)
            .execute(p).await.map(drop)?);
        Ok(())
    }

    pub async fn get(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE id_hash = $1");
        let row = with_pool!(self.store.db(), p => sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(sql))
            .bind(id_hash).fetch_optional(p).await?);
        Ok(row)
    }

    /// Records activity (for the idle timeout).
    pub async fn touch(&self, id_hash: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let sql = "UPDATE auth_sessions SET last_seen_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(id_hash).bind(at).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Ends one session by deleting its row (nothing of it is kept once it ended); returns
    /// the row as it was, when it existed.
    pub async fn delete(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("DELETE FROM auth_sessions WHERE id_hash = $1 RETURNING {SESSION_COLUMNS}");
        let row = with_pool!(self.store.db(), p => sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(sql))
            .bind(id_hash).fetch_optional(p).await?);
        Ok(row)
    }

    /// Ends every session of a provider's subject, or only those of one provider session
    /// (`sid`) when given (back-channel logout), by deleting them; returns their id hashes.
    pub async fn delete_by_subject(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "DELETE FROM auth_sessions WHERE issuer = $1 \
                   AND ($2 IS NULL OR subject = $2) AND ($3 IS NULL OR provider_sid = $3) RETURNING id_hash";
        let ended = with_pool!(self.store.db(), p => sqlx::query_scalar(sql)
            .bind(issuer).bind(subject).bind(sid).fetch_all(p).await?);
        Ok(ended)
    }

    /// Every session still stored, expired ones included (like `delete_all`): what the admin
    /// command searches when it is given a pseudonym, which only the HMAC can match. An
    /// admin's revocation must not depend on this machine's clock agreeing with the instance
    /// that created them.
    pub async fn list_all(&self) -> Result<Vec<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM auth_sessions");
        let rows = with_pool!(self.store.db(), p => sqlx::query_as::<_, SessionRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(p).await?);
        Ok(rows)
    }

    /// Ends every session (admin `--all`) by deleting them; returns how many.
    pub async fn delete_all(&self) -> Result<u64, StoreError> {
        let n = with_pool!(self.store.db(), p => sqlx::query("DELETE FROM auth_sessions")
            .execute(p).await?.rows_affected());
        Ok(n)
    }

    pub async fn insert_pending_login(&self, l: &PendingLogin) -> Result<(), StoreError> {
        let sql = "INSERT INTO auth_pending_logins \
                   (state_hash, kind, provider, nonce, sealed_pkce_verifier, sealed_return_to, acr, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        with_pool!(self.store.db(), p => sqlx::query(sql)
            .bind(&l.state_hash).bind(&l.kind).bind(&l.provider).bind(&l.nonce).bind(&l.sealed_pkce_verifier)
            .bind(&l.sealed_return_to).bind(&l.acr).bind(l.expires_at).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Takes (reads and deletes) a sign-in under way: a state, and so its nonce, works once.
    pub async fn take_pending_login(&self, state_hash: &str) -> Result<Option<PendingLogin>, StoreError> {
        let sql = "DELETE FROM auth_pending_logins WHERE state_hash = $1 \
                   RETURNING state_hash, kind, provider, nonce, sealed_pkce_verifier, sealed_return_to, acr, expires_at";
        let row = with_pool!(self.store.db(), p => sqlx::query_as::<_, PendingLogin>(sql)
            .bind(state_hash).fetch_optional(p).await?);
        Ok(row)
    }

    pub async fn insert_pending_logout(&self, state_hash: &str, expires_at: OffsetDateTime) -> Result<(), StoreError> {
        let sql = "INSERT INTO auth_pending_logouts (state_hash, expires_at) VALUES ($1, $2)";
        with_pool!(self.store.db(), p => sqlx::query(sql).bind(state_hash).bind(expires_at).execute(p).await.map(drop)?);
        Ok(())
    }

    /// Takes a logout under way; returns its expiry when it existed.
    pub async fn take_pending_logout(&self, state_hash: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let sql = "DELETE FROM auth_pending_logouts WHERE state_hash = $1 RETURNING expires_at";
        let row = with_pool!(self.store.db(), p => sqlx::query_scalar(sql).bind(state_hash).fetch_optional(p).await?);
        Ok(row)
    }

    /// How many sessions are live (not revoked, not past their absolute timeout).
    pub async fn count_live(&self, now: OffsetDateTime) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM auth_sessions WHERE revoked_at IS NULL AND expires_at > $1";
        let n = with_pool!(self.store.db(), p => sqlx::query_scalar(sql).bind(now).fetch_one(p).await?);
        Ok(n)
    }

    /// Deletes expired sign-ins and logouts under way, and sessions past their absolute
    /// timeout (an ended session keeps nothing: see docs/authentication.md).
    pub async fn purge(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        with_pool!(self.store.db(), p => {
            sqlx::query("DELETE FROM auth_pending_logins WHERE expires_at < $1").bind(now).execute(p).await?;
            sqlx::query("DELETE FROM auth_pending_logouts WHERE expires_at < $1").bind(now).execute(p).await?;
            sqlx::query("DELETE FROM auth_sessions WHERE expires_at < $1").bind(now).execute(p).await.map(drop)?
        });
        Ok(())
    }
}
