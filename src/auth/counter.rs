//! The citizen an agent assists at the counter or on the phone (assisted entry): chosen on
//! `/.guichet/guichet-agent/usager` from the one-time code the citizen reads out, kept in the
//! agent's browser as a cookie sealed under the agent's session key (`sealed::SessionKey`:
//! only that session's cookie opens it, and it names nobody in clear), for at most
//! [`SELECTION_LIFETIME`]. The proxy's protect phase reads it to seal the fields the agent
//! enters under that citizen's key (docs/cryptography.md, "Assisted entry").

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::Auth;
use super::sealed::SessionKey;
use super::session::Session;
use crate::audit::event::{Channel, to_micros};

/// The cookie holding the sealed selection (sent on every path, like the session cookie).
pub const ASSISTED_COOKIE: &str = "__Host-guichet-usager";
/// How long a selection lasts: one counter appointment or call.
pub const SELECTION_LIFETIME: time::Duration = time::Duration::hours(1);
/// The associated data's column name of the sealed selection.
const COLUMN: &str = "assisted-citizen";

/// The assisted citizen, by the pseudonyms that own their encrypted fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistedCitizen {
    /// The citizen's field subject (`Auth::field_subject`, sector `general`), as their counter
    /// code recorded it.
    pub field_subject: String,
    /// Their field subject in each other sector (`Auth::field_subject_in`), by sector slug, as
    /// recorded with the code; a sector missing here (a code made before sectors) falls back
    /// to `field_subject`, as the citizen's own requests do.
    #[serde(default)]
    pub sector_fields: std::collections::BTreeMap<String, String>,
    /// Counter or phone.
    pub channel: Channel,
    /// Micro-seconds since the epoch after which the selection is void.
    pub expires_us: i64,
}

impl AssistedCitizen {
    /// The subject that owns the fields the agent enters in an activity of `sector`: the one
    /// the citizen's own requests in that sector seal under.
    pub fn field_subject_in(&self, sector: crate::policy::Sector) -> &str {
        self.sector_fields.get(sector.as_str()).map_or(self.field_subject.as_str(), String::as_str)
    }
}

impl Auth {
    /// The `Set-Cookie` value selecting `citizen` for the agent whose request carries
    /// `headers` (their session cookie seals it); `None` when it cannot be sealed.
    pub fn select_assisted(
        &self,
        headers: &HeaderMap,
        session: &Session,
        citizen: &AssistedCitizen,
    ) -> Option<HeaderValue> {
        let cookie = super::cookie_value(headers, &self.settings.cookie_name)?;
        let key = SessionKey::of_cookie(cookie).ok()?;
        let json = serde_json::to_string(citizen).ok()?;
        let sealed = key.seal(&session.id_hash, COLUMN, &json, self.random.as_ref()).ok()?;
        let age = SELECTION_LIFETIME.whole_seconds();
        Some(super::set_cookie(ASSISTED_COOKIE, &sealed, Some(age)))
    }

    /// The `Set-Cookie` value ending the selection.
    pub fn end_assisted(&self) -> HeaderValue {
        super::clear_cookie(ASSISTED_COOKIE)
    }

    /// The citizen the agent `session` (whose request carries `headers`) assists now: `None`
    /// when none was selected, the selection expired, or it was sealed for another session.
    pub fn assisted_citizen(&self, headers: &HeaderMap, session: &Session) -> Option<AssistedCitizen> {
        if session.kind != super::session::Kind::Agent {
            return None;
        }
        let cookie = super::cookie_value(headers, &self.settings.cookie_name)?;
        let sealed = super::cookie_value(headers, ASSISTED_COOKIE)?;
        let json = SessionKey::of_cookie(cookie).ok()?.open(&session.id_hash, COLUMN, sealed).ok()?;
        let citizen: AssistedCitizen = serde_json::from_str(&json).ok()?;
        (to_micros(self.clock.now()) < citizen.expires_us).then_some(citizen)
    }

    /// When a selection made now ends.
    pub fn assisted_until(&self) -> i64 {
        to_micros(self.clock.now() + SELECTION_LIFETIME)
    }
}
