//! What `guichet keys init|status|rotate|retire|reconcile` runs. Each function writes its
//! report to `out` (stdout in the CLI) so tests can read it.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

use time::OffsetDateTime;

use super::keyring::{self, KeyError, Keyring};
use super::vault::{CryptoError, Vault};
use crate::clock::{Clock, Random};
use crate::config::KeysSettings;
use crate::store::Store;

/// Creates the keyring (KEK version 1 and the MAC keys) and, when the configured identity
/// file does not exist yet, a new age identity for it.
pub fn init(s: &KeysSettings, rng: &dyn Random, now: OffsetDateTime, out: &mut dyn Write) -> Result<(), KeyError> {
    if s.keyring.exists() {
        return Err(KeyError::Exists { path: s.keyring.clone() });
    }
    if let Some(path) = s.identity_file.as_ref().filter(|p| !p.exists()) {
        let public = keyring::write_new_identity(path, now)?;
        let _ = writeln!(out, "Created the age identity {} (public key {public}).", path.display());
    }
    Keyring::generate(rng, now)?.create(s)?;
    let tombstones = s.tombstones_path();
    create_tombstones(&tombstones)?;
    let _ = writeln!(
        out,
        "Created the keyring {} with KEK version 1.\n\n\
         Keep the identity (or passphrase) secret and OUT of the store's backups: whoever holds\n\
         both a store backup and the keyring with its identity can read every protected field.\n\
         Back the keyring and its identity up separately (offline, e.g. a sealed envelope or a\n\
         safe): without them every encrypted field is lost for good. Set `keys.identity_file`\n\
         (or GUICHET_KEYS__IDENTITY_FILE) on every instance.\n\n\
         Created the tombstone file {}: it records every erasure (destroyed data key) OUTSIDE the\n\
         store, so that restoring an older store cannot bring erased data back. Keep it with the\n\
         keyring, never with the store's backups; back it up after erasures; with several\n\
         instances, give them all this one file (shared storage). `serve` refuses to start when\n\
         it is missing or lacks erasures the store records.",
        s.keyring.display(),
        tombstones.display()
    );
    Ok(())
}

/// An empty tombstone file, mode 0600, unless one exists.
fn create_tombstones(path: &std::path::Path) -> Result<(), KeyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).and_then(|f| f.sync_all()).map_err(|e| KeyError::Write { path: path.to_owned(), source: e })
}

/// Versions, how many data keys each wraps, and the tombstones.
pub async fn status(vault: &Vault, out: &mut dyn Write) -> Result<(), CryptoError> {
    let usage = vault.usage().await?;
    let k = vault.keyring();
    let _ = writeln!(out, "current KEK version: {}", k.current_version());
    let _ = writeln!(out, "{:<8} {:<26} {:>10}", "version", "created", "data keys");
    for v in k.versions() {
        let n = usage.iter().find(|(u, _)| *u == v.version).map_or(0, |(_, n)| *n);
        let created = v.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mark = if v.current { " (current)" } else { "" };
        let _ = writeln!(out, "{:<8} {created:<26} {n:>10}{mark}", v.version);
    }
    for (v, n) in usage.iter().filter(|(u, _)| !k.versions().iter().any(|i| i.version == *u)) {
        let _ = writeln!(out, "{v:<8} {:<26} {n:>10} (NOT IN THE KEYRING: these keys cannot be opened)", "?");
    }
    let retired = k.retired_versions();
    if !retired.is_empty() {
        let list: Vec<String> = retired.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "retired: {}", list.join(", "));
    }
    let _ = writeln!(out, "{}", vault.tombstone_health().await?.summary());
    Ok(())
}

/// Adds a KEK version (unless `resume`) and re-wraps every data key under it, batch by batch,
/// printing a progress line on `progress_out`.
pub async fn rotate(
    s: &KeysSettings,
    store: Store,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    resume: bool,
    batch: usize,
    out: &mut dyn Write,
) -> Result<u64, CryptoError> {
    let mut keyring = Keyring::open(s)?;
    if !resume {
        let v = keyring.add_version(random.as_ref(), clock.now())?;
        keyring.save(s)?;
        let _ = writeln!(out, "KEK version {v} added and now current.");
    }
    let vault = Vault::new(keyring, store, s, clock, random);
    let n = vault
        .rewrap_all(batch, |done, total| {
            let _ = write!(out, "\rre-wrapping data keys: {done}/{total}");
            let _ = out.flush();
            ControlFlow::Continue(())
        })
        .await?;
    let _ = writeln!(
        out,
        "\n{n} data key(s) re-wrapped under KEK version {}. If interrupted, run `guichet keys rotate --resume`.",
        vault.keyring().current_version()
    );
    Ok(n)
}

/// Removes a KEK version from the keyring when no data key uses it any more.
pub async fn retire(s: &KeysSettings, store: &Store, version: u32, out: &mut dyn Write) -> Result<(), CryptoError> {
    let mut keyring = Keyring::open(s)?;
    let in_use = store.keys().count_by_kek_version().await?;
    if let Some((_, n)) = in_use.iter().find(|(v, n)| *v == i64::from(version) && *n > 0) {
        return Err(KeyError::VersionInUse { version, count: u64::try_from(*n).unwrap_or(0) }.into());
    }
    keyring.retire(version)?;
    keyring.save(s)?;
    let _ = writeln!(out, "KEK version {version} retired: its key is no longer in the keyring.");
    Ok(())
}

/// Re-destroys keys listed in tombstones (after a restore) and reports it.
pub async fn reconcile(vault: &Vault, out: &mut dyn Write) -> Result<(), CryptoError> {
    let r = vault.reconcile().await?;
    let _ = writeln!(
        out,
        "{} data key(s) destroyed again; {} tombstone(s) copied between the store and the tombstone file.",
        r.redestroyed, r.tombstones_restored
    );
    let _ = writeln!(out, "{}", vault.tombstone_health().await?.summary());
    Ok(())
}
