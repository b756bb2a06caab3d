//! The receipt of one consent event: JSON with the fields of the Kantara Initiative Consent
//! Receipt Specification v1.1 (names kept as they are there), plus the ISO/IEC TS 27560
//! consent-record facts Kantara lacks (event kind, notice version and hash, policy version,
//! channel, identity check, and where the event sits in the journal). Signed as a compact
//! JWS (ES256, `typ` `guichet-consent-receipt+jwt`) with the gateway's receipt key (its own,
//! never the assertion key), so anyone can check it against `/.guichet/jwks.json`.

use serde_json::{Value, json};

use crate::audit::{AuditEvent, Operation};
use crate::policy::model::ActivityFile;
use crate::store::ConsentRow;

use super::ConsentError;

/// The receipt's claims for ledger row `row` of `activity`, issued by `issuer` (the gateway's
/// public URL).
pub fn claims(row: &ConsentRow, activity: &ActivityFile, issuer: &str) -> Result<Value, ConsentError> {
    let event: AuditEvent = serde_json::from_str(&row.body).map_err(|_| ConsentError::Corrupt)?;
    let (kind, channel, identified_by, notice_version, notice_sha256, policy_version) = match &event.operation {
        Operation::ConsentGiven { channel, identified_by, notice_version, notice_sha256, policy_version } => {
            ("given", channel, identified_by, notice_version, notice_sha256, policy_version)
        }
        Operation::ConsentWithdrawn { channel, identified_by, notice_version, notice_sha256, policy_version } => {
            ("withdrawn", channel, identified_by, notice_version, notice_sha256, policy_version)
        }
        _ => return Err(ConsentError::Corrupt),
    };
    let purpose = activity.purposes.iter().find(|p| p.id == row.purpose);
    let c = &activity.controller;
    Ok(json!({
        // Kantara Consent Receipt v1.1
        "version": "KI-CR-v1.1.0",
        "jurisdiction": "FR",
        "consentTimestamp": event.at.unix_timestamp(),
        "collectionMethod": channel.as_str(),
        "consentReceiptID": format!("urn:guichet:consent:{}:{}", row.seq, row.hash),
        "language": "fr",
        "piiPrincipalId": row.subject,
        "piiControllers": [{
            "piiController": c.organisation,
            "contact": activity.dpo.contact,
            "address": c.address,
            "email": c.contact,
            "onBehalf": false,
        }],
        "policyUrl": format!("{issuer}/.guichet/informations/{}", activity.id),
        "services": [{
            "service": activity.name,
            "purposes": [{
                "purpose": purpose.map_or(row.purpose.as_str(), |p| p.description.as_str()),
                "purposeCategory": [row.purpose],
                "consentType": "EXPLICIT",
                "piiCategory": activity.categories.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
                "primaryPurpose": false,
                "termination": "Retrait à tout moment, sans conséquence sur les autres services",
                "thirdPartyDisclosure": !activity.recipients.is_empty(),
            }],
        }],
        "sensitive": false,
        "spiCat": [],
        // ISO/IEC TS 27560 consent record facts
        "iss": issuer,
        "iat": event.at.unix_timestamp(),
        "jti": format!("{}:{}", row.seq, row.hash),
        "event": kind,
        "activity": row.activity,
        "purposeId": row.purpose,
        "identityCheck": identified_by.as_str(),
        "recordedBy": { "kind": event.actor.kind, "id": event.actor.id, "role": event.role },
        "notice": { "version": notice_version, "sha256": notice_sha256 },
        "policyVersion": policy_version,
        "journal": { "seq": row.seq, "hash": row.hash },
    }))
}
