//! Notices rendered from the askama templates under `templates/notify/`: a subject line that
//! says nothing personal, a plain-text body, an HTML body, and a printable A4 letter. Short
//! sentences and everyday words (FALC); dates in French, French local time.

use askama::Template;
use time::{Date, OffsetDateTime};

use super::Notice;
use crate::clock::in_paris;
use crate::config::NotifySettings;
use crate::pages::REQUEST_PREFIX;

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: &'static str,
    pub text: String,
    pub html: String,
}

/// What the templates read: the notice flattened, its dates already in French.
struct View<'a> {
    kind: &'static str,
    commune: &'a str,
    reference: &'a str,
    right: &'a str,
    reason: std::borrow::Cow<'a, str>,
    activity: &'a str,
    purpose: &'a str,
    given: bool,
    /// The date the notice is about (due date, deletion date, or the consent's date and time).
    when: String,
    /// Where the citizen reads more (the privacy centre or the consent page).
    link: String,
}

#[derive(Template)]
#[template(path = "notify/message.txt")]
struct TextBody<'a> {
    v: &'a View<'a>,
}

#[derive(Template)]
#[template(path = "notify/message.html")]
struct HtmlBody<'a> {
    v: &'a View<'a>,
    subject: &'a str,
}

#[derive(Template)]
#[template(path = "notify/letter.html")]
struct Letter<'a> {
    v: &'a View<'a>,
    subject: &'a str,
    return_address: &'a [String],
    postal_address: &'a [String],
    dated: String,
}

/// The privacy centre, where requests and answers are shown.
const PRIVACY_CENTRE: &str = "/.guichet/mes-donnees/";
const CONSENT_PAGE: &str = "/.guichet/consentement/";

/// The subject line: the same for every citizen, so it tells nothing about anyone.
pub fn subject(notice: &Notice) -> &'static str {
    match notice {
        Notice::RequestReceived { .. } => "Votre demande a bien été reçue",
        Notice::DeadlineExtended { .. } => "Votre demande prend plus de temps",
        Notice::AnswerReady { .. } => "La réponse à votre demande est prête",
        Notice::ExportReady { .. } => "Vos données sont prêtes",
        Notice::Retention { .. } => "Des informations vont être effacées",
        Notice::ConsentReceipt { .. } => "Votre choix est bien enregistré",
        Notice::DpoAlert { .. } => "Alerte de la passerelle : une action est attendue",
    }
}

fn view<'a>(notice: &'a Notice, commune: &'a str, link_base: &str) -> View<'a> {
    let mut v = View {
        kind: notice.kind(),
        commune,
        reference: "",
        right: "",
        reason: "".into(),
        activity: "",
        purpose: "",
        given: false,
        when: String::new(),
        link: format!("{link_base}{PRIVACY_CENTRE}"),
    };
    match notice {
        Notice::RequestReceived { reference, right, due_on } => {
            (v.reference, v.right, v.when) = (reference, right, french_date(*due_on));
        }
        Notice::DeadlineExtended { reference, reason, due_on } => {
            (v.reference, v.reason, v.when) = (reference, reason.into(), french_date(*due_on));
        }
        Notice::AnswerReady { reference } => v.reference = reference,
        Notice::ExportReady { reference } => {
            v.reference = reference;
            v.link = format!("{link_base}{REQUEST_PREFIX}{reference}");
        }
        Notice::Retention { activity, deletion_on } => (v.activity, v.when) = (activity, french_date(*deletion_on)),
        Notice::ConsentReceipt { activity, purpose, given, at, .. } => {
            (v.activity, v.purpose, v.given, v.when) = (activity, purpose, *given, french_date_time(*at));
            v.link = format!("{link_base}{CONSENT_PAGE}");
        }
        Notice::DpoAlert { condition, count, on } => {
            let (what, page) = crate::alerts::describe(condition, *count);
            (v.reason, v.when) = (what, french_date(*on));
            v.link = format!("{link_base}{page}");
        }
    }
    v
}

/// The e-mail of a notice.
pub fn message(notice: &Notice, commune: &str, link_base: &str) -> Rendered {
    let v = view(notice, commune, link_base);
    let subject = subject(notice);
    Rendered {
        subject,
        text: TextBody { v: &v }.render().unwrap_or_default(),
        html: HtmlBody { v: &v, subject }.render().unwrap_or_default(),
    }
}

/// The notice as a printable A4 letter (for a citizen without e-mail, or a postal answer).
pub fn letter(notice: &Notice, s: &NotifySettings, link_base: &str, postal_address: &[String], today: Date) -> String {
    let v = view(notice, &s.commune_name, link_base);
    Letter {
        v: &v,
        subject: subject(notice),
        return_address: &s.letter_return_address,
        postal_address,
        dated: french_date(today),
    }
    .render()
    .unwrap_or_default()
}

pub use crate::pages::french_date;

/// "1er mars 2027 à 14 h 05", French local time.
pub fn french_date_time(t: OffsetDateTime) -> String {
    let local = in_paris(t);
    format!("{} à {} h {:02}", french_date(local.date()), local.hour(), local.minute())
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn a_receipt_reads_as_short_french_sentences() {
        let notice = Notice::RequestReceived {
            reference: "DR-7K3M-Q9XP".into(),
            right: "Voir mes données".into(),
            due_on: date!(2027 - 03 - 01),
        };
        let r = message(&notice, "Mairie de Démoville", "https://mairie.example");
        assert_eq!(r.subject, "Votre demande a bien été reçue");
        assert_eq!(
            r.text,
            "Bonjour,\n\nNous avons bien reçu votre demande.\nVotre demande : Voir mes données.\n\
             Votre numéro de demande : DR-7K3M-Q9XP.\nGardez ce numéro. Il vous sert si vous appelez la mairie.\n\
             Nous vous répondons au plus tard le 1er mars 2027.\n\
             Vous pouvez suivre votre demande dans « Mes données » :\nhttps://mairie.example/.guichet/mes-donnees/\n\n\
             Mairie de Démoville\n\nCe message est envoyé automatiquement. Merci de ne pas y répondre."
        );
    }

    #[test]
    fn dates_are_french_and_local() {
        assert_eq!(french_date(date!(2027 - 08 - 15)), "15 août 2027");
        // 22:30 UTC on 31 March is 00:30 on 1 April in Paris (summer time).
        assert_eq!(french_date_time(datetime!(2027-03-31 22:30 UTC)), "1er avril 2027 à 0 h 30");
    }
}
