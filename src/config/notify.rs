//! `[notify]`: how notices reach citizens (docs/notify.md).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// The notification channel's settings. Without `smtp_host` and `outbox_dir`, notices are
/// still recorded (and printable as letters) but no e-mail is sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// The SMTP relay (a host name; `smtp_url` is not accepted, so no credentials hide in a URL).
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// 587 (submission with STARTTLS) unless told otherwise.
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Send without STARTTLS. Only accepted when `smtp_host` is a loopback address (a relay on
    /// the same machine); otherwise every message is refused rather than sent in clear.
    #[serde(default)]
    pub allow_plain_on_loopback: bool,
    /// PEM file of the CA that signed the relay's certificate, when it is not a public one.
    #[serde(default)]
    pub smtp_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub smtp_username: Option<String>,
    /// Secret; or `smtp_password_file`.
    #[serde(default)]
    pub smtp_password: Option<SecretString>,
    #[serde(default)]
    pub smtp_password_file: Option<PathBuf>,
    /// The sender, e.g. `Mairie de Villeneuve <ne-pas-repondre@villeneuve.fr>`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Shown in messages and letters ("Mairie de …").
    #[serde(default = "default_commune_name")]
    pub commune_name: String,
    /// The return address printed on letters, one line per line.
    #[serde(default)]
    pub letter_return_address: Vec<String>,
    /// Where the privacy centre is, for links in messages (default: `server.public_url`).
    #[serde(default)]
    pub link_base: Option<String>,
    /// Demonstration and development only: write messages to this directory instead of
    /// sending them, readable at `/.guichet/demo/boite-mail`. Refused unless the gateway
    /// listens on loopback (the page shows every citizen's messages).
    #[serde(default)]
    pub outbox_dir: Option<PathBuf>,
    /// The DPO's address for the gateway's alerts (overdue requests, a broken journal, a
    /// breach deadline near, a failed retention run): one e-mail per condition and day.
    #[serde(default)]
    pub dpo_address: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_from() -> String {
    "Mairie <ne-pas-repondre@mairie.invalid>".to_owned()
}

fn default_commune_name() -> String {
    "Votre mairie".to_owned()
}

impl NotifySettings {
    /// Whether messages leave the gateway (SMTP or the demo outbox).
    pub fn delivers(&self) -> bool {
        self.smtp_host.is_some() || self.outbox_dir.is_some()
    }
}

/// The `[notify]` checks; returns the SMTP password when one is configured.
pub(super) fn validate(loaded: &super::Loaded, problems: &mut Vec<super::Problem>) -> Option<SecretString> {
    let n = &loaded.settings.notify;
    let src = &loaded.source;
    if n.from.parse::<lettre::message::Mailbox>().is_err() {
        problems.push(src.problem("notify.from", "is not an address such as `Mairie <ne-pas-repondre@commune.fr>`"));
    }
    if n.allow_plain_on_loopback && !n.smtp_host.as_deref().is_some_and(crate::auth::is_loopback_host) {
        problems.push(src.problem(
            "notify.allow_plain_on_loopback",
            "only applies to a relay on loopback (127.0.0.1, ::1 or localhost); elsewhere STARTTLS is required",
        ));
    }
    if let Some(ca) = &n.smtp_ca_file
        && let Err(e) = crate::tls::load_cert_chain(ca)
    {
        problems.push(src.problem("notify.smtp_ca_file", e.to_string()));
    }
    if n.outbox_dir.is_some() && !loaded.settings.server.listen.ip().is_loopback() {
        problems.push(src.problem(
            "notify.outbox_dir",
            "is for demonstrations: its page shows every citizen's messages, so the gateway must listen on loopback",
        ));
    }
    if n.dpo_address.as_deref().is_some_and(|a| a.parse::<lettre::Address>().is_err()) {
        problems.push(src.problem("notify.dpo_address", "is not an e-mail address such as `dpo@commune.fr`"));
    }
    let password = super::validate::secret_or_file(
        loaded,
        "notify.smtp_password",
        n.smtp_password.as_ref(),
        n.smtp_password_file.as_ref(),
    )
    .map_err(|p| problems.push(p))
    .ok()
    .flatten();
    if password.is_some() && n.smtp_username.is_none() {
        problems.push(src.problem("notify.smtp_username", "is required with a password"));
    }
    password
}
