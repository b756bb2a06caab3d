//! Which retention class a category's values are sealed in. Data keys are per (citizen,
//! activity, retention class) so that a category whose retention ends can be crypto-shredded
//! while the activity's other categories stay readable (docs/cryptography.md, "Keys that
//! match retention"). Categories of one activity with identical schedules share a class (one
//! key, shredded together when their common end comes); a category without a rule — or one
//! the activity does not declare — is in the activity's default class.
//!
//! The class is a digest of what decides *when* the data ends and *what* then happens: the
//! active duration, what it counts from (and the event's name), the intermediate duration and
//! the end action. Wording (`event_label`, `source`) does not change it. Durations are read as
//! the policy validator reads them ("1 an" and "1 year" are one class). Changing a rule gives
//! a new class for values sealed from then on; values sealed before stay under the old
//! class's key (`Vault::classes` lists what a citizen's activity holds).

use super::model::{ActivityFile, Retention, RetentionEnd, RetentionStart};
use super::notice::{Period, Unit};
use crate::crypto::vault::DEFAULT_CLASS;

/// The retention class of `category` in `activity`.
pub fn retention_class(activity: &ActivityFile, category: &str) -> String {
    activity
        .categories
        .iter()
        .find(|c| c.id == category)
        .and_then(|c| c.retention.as_ref())
        .map_or_else(|| DEFAULT_CLASS.to_owned(), class_of_rule)
}

/// The class of one retention rule: `r-` and 16 hex digits (64 bits of SHA-256 over the
/// framed schedule; a collision inside one activity's few rules is out of reach).
pub fn class_of_rule(rule: &Retention) -> String {
    let mut input = Vec::with_capacity(96);
    crate::crypto::push_framed(&mut input, b"guichet/retention-class/v1");
    crate::crypto::push_framed(&mut input, duration(&rule.active).as_bytes());
    crate::crypto::push_framed(&mut input, start(rule.from).as_bytes());
    let event = if rule.from == RetentionStart::Event { rule.event.as_deref().unwrap_or("").trim() } else { "" };
    crate::crypto::push_framed(&mut input, event.as_bytes());
    crate::crypto::push_framed(&mut input, rule.intermediate.as_deref().map(duration).unwrap_or_default().as_bytes());
    crate::crypto::push_framed(&mut input, end(rule.then).as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let hex: String = digest.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("r-{hex}")
}

/// `"3y"`, `"6m"`, `"30d"`; a duration the validator would refuse stays as written (trimmed).
fn duration(text: &str) -> String {
    match Period::parse(text) {
        Ok(Period { count, unit }) => {
            let u = match unit {
                Unit::Day => 'd',
                Unit::Month => 'm',
                Unit::Year => 'y',
            };
            format!("{count}{u}")
        }
        Err(_) => text.trim().to_owned(),
    }
}

fn start(s: RetentionStart) -> &'static str {
    match s {
        RetentionStart::Collection => "collection",
        RetentionStart::LastActivity => "last_activity",
        RetentionStart::CaseClosed => "case_closed",
        RetentionStart::Event => "event",
    }
}

fn end(e: RetentionEnd) -> &'static str {
    match e {
        RetentionEnd::Destroy => "destroy",
        RetentionEnd::Anonymise => "anonymise",
        RetentionEnd::ArchiveReview => "archive_review",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Category;

    fn rule(active: &str, then: RetentionEnd) -> Retention {
        Retention {
            active: active.to_owned(),
            from: RetentionStart::CaseClosed,
            event: None,
            event_label: None,
            intermediate: None,
            then,
            source: None,
            producing_service: None,
            notice_before: None,
            archive_visible_to: Vec::new(),
        }
    }

    fn cantine() -> ActivityFile {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/cantine.toml")).unwrap();
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn categories_with_identical_rules_share_a_class_and_others_do_not() {
        let a = cantine();
        let child = retention_class(&a, "identite-enfant");
        let parent = retention_class(&a, "contact-parent");
        let health = retention_class(&a, "sante-enfant");
        // The parent's e-mail is destroyed while the child's identity goes to archive review.
        assert_ne!(child, parent);
        // Same schedule and end (1 year after the case is closed, then destroy): one class.
        assert_eq!(parent, health);
        assert!(child.starts_with("r-") && child.len() == 18, "{child}");
        assert_eq!(retention_class(&a, "no-such-category"), DEFAULT_CLASS);
    }

    #[test]
    fn a_category_without_a_rule_is_in_the_default_class() {
        let mut a = cantine();
        a.categories.push(Category {
            id: "sans".into(),
            name: "Sans règle".into(),
            special: false,
            retention: None,
            claims: Vec::new(),
            client_address: false,
        });
        assert_eq!(retention_class(&a, "sans"), DEFAULT_CLASS);
    }

    #[test]
    fn the_class_follows_the_schedule_not_the_wording() {
        let base = class_of_rule(&rule("1 year", RetentionEnd::Destroy));
        assert_eq!(class_of_rule(&rule("1 an", RetentionEnd::Destroy)), base);
        assert_eq!(
            class_of_rule(&Retention {
                source: Some("x".into()),
                event_label: Some("y".into()),
                ..rule("1 year", RetentionEnd::Destroy)
            }),
            base
        );
        for other in [
            rule("2 years", RetentionEnd::Destroy),
            rule("1 year", RetentionEnd::Anonymise),
            Retention { intermediate: Some("5 years".into()), ..rule("1 year", RetentionEnd::Destroy) },
            Retention { from: RetentionStart::Collection, ..rule("1 year", RetentionEnd::Destroy) },
            Retention {
                from: RetentionStart::Event,
                event: Some("radiation".into()),
                ..rule("1 year", RetentionEnd::Destroy)
            },
        ] {
            assert_ne!(class_of_rule(&other), base, "{other:?}");
        }
    }
}
