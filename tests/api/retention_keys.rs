//! Data keys that match retention (issue 15, item 1), on both store engines: one key per
//! (citizen, activity, retention class), one class shredded while the others still open,
//! `gch1.` tokens of the legacy per-activity key still readable, and a class shred reaching
//! every instance sharing the store.

use guichet::clock::SystemRandom;
use guichet::crypto::secret::Key256;
use guichet::crypto::token::{self, KeyId, KeyRef};
use guichet::crypto::vault::Shredded;
use guichet::crypto::{CryptoError, FieldContext, Keyring, LEGACY_CLASS, aead};
use guichet::store::DataKeyRow;

use crate::helpers::Backend;
use crate::keys::Setup;

const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-28 12:00 UTC);
const ACTIVITY: &str = "cantine";
/// Two classes as `policy::retention_class` names them (the child's identity goes to archive
/// review, the parent's e-mail is destroyed).
const CHILD: &str = "r-1111111111111111";
const PARENT: &str = "r-2222222222222222";

fn ctx<'a>(subject: &'a str, field: &'a str) -> FieldContext<'a> {
    FieldContext { activity: ACTIVITY, field, subject }
}

/// What a gateway from before retention classes left behind: the activity's one key (class
/// column empty after migration 0015) and a `gch1.` token sealed under it.
async fn legacy_token(s: &Setup, subject: &str, field: &str, value: &str) -> String {
    let rng = SystemRandom::new();
    let keyring = Keyring::open(&s.keys).unwrap();
    let key_id = KeyId::generate(&rng).unwrap();
    let key = Key256::generate(&rng).unwrap();
    let (version, wrapped) = keyring.wrap(&key_id, subject, ACTIVITY, &key, &rng).unwrap();
    let row = DataKeyRow {
        key_id: key_id.to_string(),
        subject: subject.to_owned(),
        activity: ACTIVITY.to_owned(),
        class: LEGACY_CLASS.to_owned(),
        kek_version: i64::from(version),
        wrapped,
        created_at: NOW,
    };
    assert!(s.store().await.keys().insert_if_absent(&row).await.unwrap());
    let schedule = aead::SealKey::new(&key).unwrap();
    token::seal(&schedule, KeyRef { id: &key_id, class: None }, &ctx(subject, field), value, &rng).unwrap()
}

fn key_id(token: &str) -> &str {
    token.split('.').nth(1).unwrap()
}

async fn one_class_is_shredded_while_the_others_of_the_activity_still_open(backend: Backend) {
    let s = Setup::new(backend).await;
    let v = s.vault().await;
    let child = v.seal_in_class(&ctx("sub-1", "child_family_name"), CHILD, "Dupont").await.unwrap();
    let birth = v.seal_in_class(&ctx("sub-1", "child_birth_date"), CHILD, "2018-03-01").await.unwrap();
    let email = v.seal_in_class(&ctx("sub-1", "parent_email"), PARENT, "a@example.fr").await.unwrap();
    let other = v.seal_in_class(&ctx("sub-2", "parent_email"), PARENT, "b@example.fr").await.unwrap();
    assert!(child.starts_with("gch2.") && email.starts_with("gch2."), "{child} {email}");
    // One key per class: the child's fields share one, the parent's e-mail has its own.
    assert_eq!(key_id(&child), key_id(&birth));
    assert_ne!(key_id(&child), key_id(&email));
    assert_ne!(key_id(&email), key_id(&other));
    assert_eq!(v.class_of(&email).await.unwrap().as_deref(), Some(PARENT));
    let mut classes = v.classes("sub-1", ACTIVITY).await.unwrap();
    classes.sort();
    assert_eq!(classes, [CHILD, PARENT]);
    // A token does not open under another class's key, even relabelled as a legacy token.
    let relabelled = email.replacen("gch2.", "gch1.", 1);
    assert!(v.open(&ctx("sub-1", "parent_email"), &relabelled).await.is_err());

    // A second instance caches the parent's key before the shred.
    let other_instance = s.vault().await;
    assert_eq!(other_instance.open(&ctx("sub-1", "parent_email"), &email).await.unwrap().as_str(), "a@example.fr");

    let shredded = v.shred_class("sub-1", ACTIVITY, PARENT).await.unwrap();
    assert_eq!(shredded, Shredded::Destroyed { key_ids: vec![key_id(&email).to_owned()] });
    assert!(matches!(v.open(&ctx("sub-1", "parent_email"), &email).await, Err(CryptoError::KeyGone)));
    // The other class of the same citizen and activity still opens, and so does the same
    // class of another citizen.
    assert_eq!(v.open(&ctx("sub-1", "child_family_name"), &child).await.unwrap().as_str(), "Dupont");
    assert_eq!(v.open(&ctx("sub-1", "child_birth_date"), &birth).await.unwrap().as_str(), "2018-03-01");
    assert_eq!(v.open(&ctx("sub-2", "parent_email"), &other).await.unwrap().as_str(), "b@example.fr");
    assert_eq!(v.classes("sub-1", ACTIVITY).await.unwrap(), [CHILD]);
    assert_eq!(v.shred_class("sub-1", ACTIVITY, PARENT).await.unwrap(), Shredded::NoKey);

    // The other instance drops the key at its next generation read (the watcher's tick).
    assert!(other_instance.check_shreds().await.unwrap(), "the shred generation did not change");
    assert!(matches!(other_instance.open(&ctx("sub-1", "parent_email"), &email).await, Err(CryptoError::KeyGone)));
    assert_eq!(other_instance.open(&ctx("sub-1", "child_family_name"), &child).await.unwrap().as_str(), "Dupont");

    // The tombstone is written like any other: key id and activity, no citizen, no class.
    let file = std::fs::read_to_string(s.keys.tombstones_path()).unwrap();
    assert_eq!(file.lines().count(), 1);
    assert!(file.contains(key_id(&email)) && !file.contains("sub-1") && !file.contains(PARENT), "{file}");

    // A new value of the shredded class gets a new key; the old token stays dead.
    let again = v.seal_in_class(&ctx("sub-1", "parent_email"), PARENT, "a@example.fr").await.unwrap();
    assert_ne!(key_id(&again), key_id(&email));
    assert!(matches!(v.open(&ctx("sub-1", "parent_email"), &email).await, Err(CryptoError::KeyGone)));
}

crate::on_both_stores!(one_class_is_shredded_while_the_others_of_the_activity_still_open);

async fn a_whole_activity_shred_destroys_every_class_and_the_legacy_key(backend: Backend) {
    let s = Setup::new(backend).await;
    let old = legacy_token(&s, "sub-1", "parent_email", "ancien@example.fr").await;
    assert!(old.starts_with("gch1."), "{old}");
    let v = s.vault().await;
    // The old token still opens, through the legacy key found by its key id.
    assert_eq!(v.open(&ctx("sub-1", "parent_email"), &old).await.unwrap().as_str(), "ancien@example.fr");
    assert_eq!(v.class_of(&old).await.unwrap().as_deref(), Some(LEGACY_CLASS));
    // New values never go under the legacy key.
    let child = v.seal_in_class(&ctx("sub-1", "child_family_name"), CHILD, "Dupont").await.unwrap();
    let email = v.seal_in_class(&ctx("sub-1", "parent_email"), PARENT, "neuf@example.fr").await.unwrap();
    assert!(key_id(&child) != key_id(&old) && key_id(&email) != key_id(&old));
    let plain = v.seal(&ctx("sub-1", "note"), "x").await.unwrap();
    assert!(plain.starts_with("gch2.") && key_id(&plain) != key_id(&old), "{plain}");

    // A class shred leaves the legacy key (it holds values of every category).
    v.shred_class("sub-1", ACTIVITY, PARENT).await.unwrap();
    assert_eq!(v.open(&ctx("sub-1", "parent_email"), &old).await.unwrap().as_str(), "ancien@example.fr");
    assert!(v.classes("sub-1", ACTIVITY).await.unwrap().contains(&LEGACY_CLASS.to_owned()));

    // The erasure of the activity destroys everything left, legacy key included, at a cost of
    // one tombstone per key.
    let Shredded::Destroyed { key_ids } = v.shred("sub-1", ACTIVITY).await.unwrap() else { panic!("nothing shredded") };
    assert_eq!(key_ids.len(), 3, "legacy, child's class and default class: {key_ids:?}");
    for (field, t) in [("parent_email", &old), ("child_family_name", &child), ("note", &plain)] {
        assert!(matches!(v.open(&ctx("sub-1", field), t).await, Err(CryptoError::KeyGone)), "{field}");
    }
    assert!(v.classes("sub-1", ACTIVITY).await.unwrap().is_empty());
    let file = std::fs::read_to_string(s.keys.tombstones_path()).unwrap();
    assert_eq!(file.lines().count(), 4, "{file}");
    // A fresh instance agrees: the file and the store have the same erasures.
    let fresh = s.vault().await;
    assert_eq!(fresh.startup_check().await.unwrap(), guichet::crypto::vault::Reconciled::default());
    assert!(matches!(fresh.open(&ctx("sub-1", "parent_email"), &old).await, Err(CryptoError::KeyGone)));
}

crate::on_both_stores!(a_whole_activity_shred_destroys_every_class_and_the_legacy_key);
