//! Identity claims from userinfo, parsed into typed values and validated before anything is
//! kept. They are personal data: never logged. Only the claims listed here are kept.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::RoleRule;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("identity claim `{claim}` is not valid: {why}")]
pub struct ClaimError {
    pub claim: &'static str,
    pub why: &'static str,
}

fn bad(claim: &'static str, why: &'static str) -> ClaimError {
    ClaimError { claim, why }
}

/// A birth date as FranceConnect gives it: `-01-01` / `-MM-01` stand for an unknown day or
/// month, so the value is kept as given once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl BirthDate {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('-');
        let (y, m, d) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let date = Self { year: y.parse().ok()?, month: m.parse().ok()?, day: d.parse().ok()? };
        let ok = (1..=12).contains(&date.month) && (1..=31).contains(&date.day) && date.year >= 1850;
        ok.then_some(date)
    }
}

/// An INSEE commune code (5 characters, `2A`/`2B` for Corsica).
fn is_commune_code(s: &str) -> bool {
    let b = s.as_bytes();
    match b {
        [b'2', b'A' | b'B', rest @ ..] => rest.len() == 3 && rest.iter().all(u8::is_ascii_digit),
        _ => b.len() == 5 && b.iter().all(u8::is_ascii_digit),
    }
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn text(v: &Value, claim: &'static str) -> Result<String, ClaimError> {
    let s = v.as_str().ok_or_else(|| bad(claim, "not a string"))?;
    if s.len() > 512 || s.chars().any(char::is_control) {
        return Err(bad(claim, "too long or holds control characters"));
    }
    Ok(s.to_owned())
}

/// The identity pivot of a citizen. Absent claims stay absent (the scopes decide).
pub fn citizen(userinfo: &Map<String, Value>) -> Result<BTreeMap<String, String>, ClaimError> {
    let mut out = BTreeMap::new();
    for (name, v) in userinfo {
        let (claim, value): (&'static str, String) = match name.as_str() {
            "given_name" => ("given_name", text(v, "given_name")?),
            // May be empty (a person with no birth name on record).
            "family_name" => ("family_name", text(v, "family_name")?),
            "preferred_username" => ("preferred_username", text(v, "preferred_username")?),
            "email" => ("email", text(v, "email")?),
            "birthdate" => {
                let s = text(v, "birthdate")?;
                BirthDate::parse(&s).ok_or_else(|| bad("birthdate", "not YYYY-MM-DD"))?;
                ("birthdate", s)
            }
            "gender" => {
                let s = text(v, "gender")?;
                if s != "male" && s != "female" {
                    return Err(bad("gender", "neither male nor female"));
                }
                ("gender", s)
            }
            "birthplace" => {
                let s = text(v, "birthplace")?;
                // Empty for people born abroad.
                if !s.is_empty() && !is_commune_code(&s) {
                    return Err(bad("birthplace", "not an INSEE commune code"));
                }
                ("birthplace", s)
            }
            "birthcountry" => {
                let s = text(v, "birthcountry")?;
                if !digits(&s, 5) {
                    return Err(bad("birthcountry", "not a 5-digit INSEE country code"));
                }
                ("birthcountry", s)
            }
            _ => continue,
        };
        out.insert(claim.to_owned(), value);
    }
    Ok(out)
}

/// The claims of an agent (ProConnect).
pub fn agent(userinfo: &Map<String, Value>) -> Result<BTreeMap<String, String>, ClaimError> {
    let mut out = BTreeMap::new();
    for (name, v) in userinfo {
        let claim: &'static str = match name.as_str() {
            "given_name" => "given_name",
            "usual_name" => "usual_name",
            "email" => "email",
            "uid" => "uid",
            "siret" => "siret",
            "siren" => "siren",
            "organizational_unit" => "organizational_unit",
            "belonging_population" => "belonging_population",
            "phone" => "phone",
            "idp_id" => "idp_id",
            _ => continue,
        };
        // Some providers send numbers or null for optional claims.
        let value = match v {
            Value::Null => continue,
            Value::Number(n) => n.to_string(),
            other => text(other, claim)?,
        };
        out.insert(claim.to_owned(), value);
    }
    if out.get("siret").is_some_and(|s| !digits(s, 14)) {
        return Err(bad("siret", "not 14 digits"));
    }
    for required in ["uid", "email"] {
        if !out.contains_key(required) {
            return Err(bad(if required == "uid" { "uid" } else { "email" }, "missing"));
        }
    }
    Ok(out)
}

/// The roles the rules grant an agent with these claims.
pub fn roles(claims: &BTreeMap<String, String>, rules: &[RoleRule]) -> Vec<String> {
    let mut out: Vec<String> = rules.iter().filter(|r| rule_matches(r, claims)).map(|r| r.role.clone()).collect();
    out.sort();
    out.dedup();
    out
}

fn rule_matches(rule: &RoleRule, claims: &BTreeMap<String, String>) -> bool {
    let siret_ok = rule.siret.is_empty() || claims.get("siret").is_some_and(|s| rule.siret.contains(s));
    let uid_ok = rule.uids.is_empty() || claims.get("uid").is_some_and(|u| rule.uids.contains(u));
    let email_ok = rule.email_domains.is_empty()
        || claims
            .get("email")
            .and_then(|e| e.rsplit_once('@'))
            .is_some_and(|(_, domain)| rule.email_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)));
    siret_ok && uid_ok && email_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn pivot_accepts_fc_sandbox_shapes() {
        let c = citizen(&map(json!({
            "given_name": "Angela Claire Louise", "family_name": "", "birthdate": "1962-01-01",
            "gender": "female", "birthplace": "2A115", "birthcountry": "99100", "sub": "x", "ignored": 1
        })))
        .unwrap();
        assert_eq!(c["birthplace"], "2A115");
        assert!(!c.contains_key("sub") && !c.contains_key("ignored"));
        assert!(citizen(&map(json!({"birthplace": "", "birthcountry": "99351"}))).is_ok());
    }

    #[test]
    fn pivot_refuses_malformed_values() {
        for bad in [
            json!({"birthdate": "1962-13-01"}),
            json!({"birthdate": "62-01-01"}),
            json!({"gender": "x"}),
            json!({"birthplace": "2C115"}),
            json!({"birthcountry": "FR"}),
            json!({"given_name": 3}),
        ] {
            assert!(citizen(&map(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_need_every_condition_of_a_rule() {
        let rule = RoleRule {
            role: "etat-civil".into(),
            siret: vec!["21750001600019".into()],
            email_domains: vec!["mairie.example.fr".into()],
            uids: vec![],
        };
        let claims =
            agent(&map(json!({"uid": "1", "email": "a@Mairie.example.fr", "siret": "21750001600019"}))).unwrap();
        assert_eq!(roles(&claims, std::slice::from_ref(&rule)), vec!["etat-civil"]);
        let other = agent(&map(json!({"uid": "1", "email": "a@evil.fr", "siret": "21750001600019"}))).unwrap();
        assert!(roles(&other, &[rule]).is_empty());
    }
}
