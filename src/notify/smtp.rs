//! Sending through the commune's SMTP relay with `lettre`: STARTTLS is required (a relay that
//! does not offer it gets nothing), except towards a relay on loopback when the configuration
//! says so explicitly.

use std::time::Duration;

use anyhow::Context as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

use super::render::Rendered;
use crate::config::NotifySettings;
use crate::jobs::JobError;

/// How long one exchange with the relay may take before the job is retried later.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The relay, ready to send (one connection per message).
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Mailer {
    pub fn build(s: &NotifySettings, password: Option<SecretString>) -> anyhow::Result<Self> {
        let host = s.smtp_host.clone().context("notify.smtp_host is not set")?;
        let plain = s.allow_plain_on_loopback && crate::auth::is_loopback_host(&host);
        let tls = if plain { Tls::None } else { Tls::Required(tls_parameters(&host, s)?) };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(s.smtp_port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let (Some(user), Some(password)) = (&s.smtp_username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
        }
        Ok(Self { transport: builder.build() })
    }

    /// Hands one message to the relay. A refusal for good (5xx) ends the job; anything else
    /// (relay down, no STARTTLS, a 4xx) is retried by the job runner.
    pub async fn send(&self, message: Message) -> Result<(), JobError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(JobError::Permanent("the mail relay refused the message")),
            Err(e) if e.is_tls() => Err(JobError::Retry("no TLS with the mail relay")),
            // Notably a relay that does not offer STARTTLS: nothing is sent in clear.
            Err(e) if e.is_client() => {
                Err(JobError::Retry("the mail relay does not offer what is required (STARTTLS, login)"))
            }
            Err(_) => Err(JobError::Retry("the mail relay could not take the message")),
        }
    }
}

fn tls_parameters(host: &str, s: &NotifySettings) -> anyhow::Result<TlsParameters> {
    let mut params = TlsParameters::builder(host.to_owned());
    if let Some(ca) = &s.smtp_ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read notify.smtp_ca_file {}", ca.display()))?;
        let cert = Certificate::from_pem(&pem).context("notify.smtp_ca_file is not a PEM certificate")?;
        params = params.certificate_store(CertificateStore::None).add_root_certificate(cert);
    }
    params.build_rustls().context("cannot prepare TLS towards the mail relay")
}

/// The e-mail: plain text and HTML alternatives, a subject without personal data, and a
/// Message-ID made from the message id (so a relay can drop a copy sent twice after a crash).
pub fn compose(from: &str, to: &str, id: &str, r: &Rendered, at: time::OffsetDateTime) -> Result<Message, JobError> {
    let from: Mailbox = from.parse().map_err(|_| JobError::Permanent("notify.from is not an address"))?;
    let domain = from.email.domain().to_owned();
    let to: Mailbox = to.parse().map_err(|_| JobError::Permanent("the citizen's address is not valid"))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(r.subject)
        .date(std::time::SystemTime::from(at))
        .message_id(Some(format!("<{id}@{domain}>")))
        .multipart(MultiPart::alternative_plain_html(r.text.clone(), r.html.clone()))
        .map_err(|_| JobError::Permanent("the message could not be built"))
}
