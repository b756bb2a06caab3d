//! Separation of duties (issue 16 item 6): the DPO monitors the processing (Art. 38(6), 39),
//! so the DPO role is not held together with a role that reveals personal data (any role in a
//! field's `visible_to` or an activity's `restriction_visible_to`) or records for citizens on
//! an assisted channel (`rights.assisted_roles`, `consent.assisted_roles`), unless
//! `auth.allow_dpo_role_combination = true` says so explicitly.
//!
//! At sign-in, an agent whose claims grant both keeps the operational roles and loses the DPO
//! role (they can still do their daily work; the DPO's pages refuse them), and the drop is
//! journaled (`admin_action` `dpo_role_dropped`, outcome `denied`). `guichet check` warns
//! when two role rules could grant both to one agent.

use std::collections::BTreeSet;

use crate::config::{RoleRule, Settings};
use crate::policy::PolicySet;

/// The roles the DPO role may not be combined with, and whether combining is allowed.
#[derive(Debug, Clone, Default)]
pub struct Duties {
    pub dpo_role: String,
    pub conflicting: BTreeSet<String>,
    pub allow_combination: bool,
}

impl Duties {
    pub fn of(settings: &Settings, policies: &PolicySet) -> Self {
        let mut conflicting: BTreeSet<String> = BTreeSet::new();
        for a in &policies.activities {
            conflicting.extend(a.fields.iter().flat_map(|f| f.visible_to.iter().cloned()));
            conflicting.extend(a.restriction_visible_to.iter().cloned());
        }
        conflicting.extend(settings.rights.assisted_roles.iter().cloned());
        conflicting.extend(settings.consent.assisted_roles.iter().cloned());
        conflicting.remove(&settings.auth.dpo_role);
        Self {
            dpo_role: settings.auth.dpo_role.clone(),
            conflicting,
            allow_combination: settings.auth.allow_dpo_role_combination,
        }
    }

    /// `roles` with the DPO role removed when it comes with a conflicting one (and combining
    /// is not allowed); the second value tells whether it was removed.
    pub fn apply(&self, mut roles: Vec<String>) -> (Vec<String>, bool) {
        let has_dpo = roles.contains(&self.dpo_role);
        let conflict = roles.iter().any(|r| self.conflicting.contains(r));
        if self.allow_combination || !has_dpo || !conflict {
            return (roles, false);
        }
        roles.retain(|r| *r != self.dpo_role);
        (roles, true)
    }

    /// Warnings for `guichet check`: every pair of rules (one granting the DPO role, one a
    /// conflicting role) that some agent could satisfy together.
    pub fn warnings(&self, rules: &[RoleRule]) -> Vec<String> {
        if self.allow_combination {
            return Vec::new();
        }
        let mut out = Vec::new();
        for d in rules.iter().filter(|r| r.role == self.dpo_role) {
            for o in rules.iter().filter(|r| self.conflicting.contains(&r.role)) {
                if could_overlap(d, o) {
                    out.push(format!(
                        "auth.agent_roles: an agent could get both `{}` and `{}`; the DPO role is then dropped at \
                         sign-in (separation of duties). Narrow the rules, or set \
                         `auth.allow_dpo_role_combination = true` if this is intended.",
                        self.dpo_role, o.role
                    ));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Whether one agent's claims could satisfy both rules (each condition list is either empty,
/// or both share a value).
fn could_overlap(a: &RoleRule, b: &RoleRule) -> bool {
    let meet = |x: &[String], y: &[String], fold: bool| {
        x.is_empty()
            || y.is_empty()
            || x.iter().any(|v| y.iter().any(|w| if fold { v.eq_ignore_ascii_case(w) } else { v == w }))
    };
    meet(&a.siret, &b.siret, false) && meet(&a.email_domains, &b.email_domains, true) && meet(&a.uids, &b.uids, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(role: &str, domains: &[&str]) -> RoleRule {
        RoleRule {
            role: role.into(),
            siret: vec![],
            email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            uids: vec![],
        }
    }

    fn duties(allow: bool) -> Duties {
        Duties {
            dpo_role: "dpo".into(),
            conflicting: ["accueil".to_owned(), "etat-civil".to_owned()].into(),
            allow_combination: allow,
        }
    }

    #[test]
    fn the_dpo_role_is_dropped_when_it_comes_with_a_reveal_or_assisted_role() {
        let roles = vec!["accueil".to_owned(), "dpo".to_owned()];
        assert_eq!(duties(false).apply(roles.clone()), (vec!["accueil".to_owned()], true));
        assert_eq!(duties(true).apply(roles.clone()), (roles, false), "explicitly allowed");
        let alone = vec!["dpo".to_owned(), "supervision".to_owned()];
        assert_eq!(duties(false).apply(alone.clone()), (alone, false), "no conflicting role");
    }

    #[test]
    fn check_warns_only_about_rules_one_agent_could_satisfy_together() {
        let d = duties(false);
        let apart = [rule("dpo", &["dpo.example.fr"]), rule("accueil", &["mairie.example.fr"])];
        assert!(d.warnings(&apart).is_empty());
        let overlapping = [rule("dpo", &["dpo.example.fr"]), rule("etat-civil", &[])];
        let w = d.warnings(&overlapping);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("`dpo` and `etat-civil`"), "{w:?}");
        assert!(duties(true).warnings(&overlapping).is_empty());
    }
}
