//! The checkpoint witness: every signed checkpoint is also written outside the store, one
//! checksummed line per checkpoint in an append-only file (`audit.witness_dir`, by default
//! `<data_dir>/audit-witness/`, a directory of its own so it can live on another disk or
//! mount, with other permissions and other backups). Whoever can rewrite the store can delete
//! checkpoints from it; `guichet audit verify` then finds them in the witness.
//!
//! Line: `gcw1 NUMBER SEQ HASH AT_US KEY_ID SIGNATURE` (then the checksum of `line_file`).
//! Other witnesses (syslog, a remote append-only service) can be added behind the same two
//! operations: append checkpoints once committed, and list them for `verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::line_file::{self, LineFileError};
use crate::store::CheckpointRow;

const TAG: &str = "gcw1";
/// The file in the witness directory.
pub const FILE_NAME: &str = "checkpoints.witness";

/// The witness file of a witness directory.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Appends `cps` (already committed to the store), one line each, synced to disk.
pub fn append(path: &Path, cps: &[CheckpointRow]) -> Result<(), LineFileError> {
    let lines: Vec<String> = cps
        .iter()
        .map(|c| format!("{TAG} {} {} {} {} {} {}", c.number, c.seq, c.hash, c.at_us, c.key_id, c.signature))
        .collect();
    line_file::append(path, &lines)
}

/// What the witness holds: checkpoints by number (several when the store was restored and
/// numbers were signed twice), or `None` when the file does not exist.
pub fn read(path: &Path) -> Result<Option<BTreeMap<i64, Vec<CheckpointRow>>>, LineFileError> {
    let Some(lines) = line_file::read(path)? else { return Ok(None) };
    let mut out: BTreeMap<i64, Vec<CheckpointRow>> = BTreeMap::new();
    for line in lines {
        let damaged = || LineFileError::Damaged { path: path.to_owned(), line: line.number };
        let cp = parse(&line.payload).filter(|_| line.checked).ok_or_else(damaged)?;
        let same = out.entry(cp.number).or_default();
        if !same.contains(&cp) {
            same.push(cp);
        }
    }
    Ok(Some(out))
}

fn parse(payload: &str) -> Option<CheckpointRow> {
    let mut p = payload.split(' ');
    if p.next()? != TAG {
        return None;
    }
    let number = p.next()?.parse().ok()?;
    let seq = p.next()?.parse().ok()?;
    let hash = p.next()?.to_owned();
    let at_us = p.next()?.parse().ok()?;
    let key_id = p.next()?.to_owned();
    let signature = p.next()?.to_owned();
    p.next().is_none().then_some(CheckpointRow { number, seq, hash, at_us, key_id, signature })
}
