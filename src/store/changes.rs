//! What instances sharing a store tell each other at once: a consent withdrawn or given, a
//! session ended, a data key destroyed. On PostgreSQL each change is sent with `NOTIFY` after
//! its transaction committed, and every instance `LISTEN`s (a [`ChangeFeed`]) and drops what
//! its caches hold about it. Notifications are a fast path only: every cache still re-reads
//! the store on its own schedule (about once a second), which is all SQLite has and what
//! PostgreSQL falls back to while the notification connection is down. See docs/consent.md
//! ("Several instances").

use sqlx::postgres::{PgListener, PgNotification};

use super::{Db, Store, StoreError};

/// One change another instance must learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The consent ledger of this subject (consent pseudonym) changed.
    Consent(String),
    /// This session (id hash) ended.
    SessionEnded(String),
    /// Every session ended.
    AllSessionsEnded,
    /// A data key was destroyed: the shred generation changed.
    Shred,
}

impl Change {
    fn payload(&self) -> String {
        match self {
            Self::Consent(subject) => format!("c:{subject}"),
            Self::SessionEnded(id_hash) => format!("s:{id_hash}"),
            Self::AllSessionsEnded => "s*".to_owned(),
            Self::Shred => "k".to_owned(),
        }
    }

    fn parse(payload: &str) -> Option<Self> {
        match payload {
            "s*" => Some(Self::AllSessionsEnded),
            "k" => Some(Self::Shred),
            _ => match payload.split_once(':')? {
                ("c", subject) if !subject.is_empty() => Some(Self::Consent(subject.to_owned())),
                ("s", id_hash) if !id_hash.is_empty() => Some(Self::SessionEnded(id_hash.to_owned())),
                _ => None,
            },
        }
    }
}

/// What the feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Change(Change),
    /// The connection was lost and is being re-established: notifications may have been
    /// missed, so caches must forget everything they hold.
    MayHaveMissed,
}

/// The notification channel of the store: one per database schema, so gateways of two
/// deployments sharing a database (or two test schemas) do not hear each other.
pub(super) fn channel_of(schema: &str) -> String {
    let mut channel = format!("guichet_changes.{schema}");
    // PostgreSQL identifiers are at most 63 bytes.
    while channel.len() > 63 {
        channel.pop();
    }
    channel
}

impl Store {
    /// Tells the other instances about `change`, once its transaction has committed. Best
    /// effort: a failure is logged and the others' polling still catches up. Nothing to do
    /// on SQLite (one host; caches poll).
    pub async fn announce(&self, change: &Change) {
        let (Db::Postgres(pool), Some(channel)) = (&self.db, &self.channel) else { return };
        let sent =
            sqlx::query("SELECT pg_notify($1, $2)").bind(channel.as_ref()).bind(change.payload()).execute(pool).await;
        if let Err(e) = sent {
            tracing::warn!(error = %StoreError::from(e), "cannot notify the other instances; they will poll");
        }
    }

    /// Listens for the changes other instances announce; `None` on SQLite.
    pub async fn change_feed(&self) -> Result<Option<ChangeFeed>, StoreError> {
        let (Db::Postgres(pool), Some(channel)) = (&self.db, &self.channel) else { return Ok(None) };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        Ok(Some(ChangeFeed { listener }))
    }
}

/// A live `LISTEN` on the store's channel.
pub struct ChangeFeed {
    listener: PgListener,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl ChangeFeed {
    /// The next change heard. An error means the connection could not be re-established:
    /// the caller waits and opens a new feed.
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(Heard::MayHaveMissed),
                Some(n) => {
                    if let Some(change) = parse(&n) {
                        return Ok(Heard::Change(change));
                    }
                    tracing::warn!("ignored a malformed change notification");
                }
            }
        }
    }
}

fn parse(n: &PgNotification) -> Option<Change> {
    Change::parse(n.payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        for c in [
            Change::Consent("ab12".into()),
            Change::SessionEnded("ff00".into()),
            Change::AllSessionsEnded,
            Change::Shred,
        ] {
            assert_eq!(Change::parse(&c.payload()), Some(c));
        }
        for junk in ["", "c:", "x:1", "s", "kk"] {
            assert_eq!(Change::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn channels_fit_an_identifier() {
        assert_eq!(channel_of("t_ab"), "guichet_changes.t_ab");
        assert_eq!(channel_of(&"x".repeat(100)).len(), 63);
    }
}
