//! Append-only files of checksummed lines, kept outside the store: the checkpoint witness
//! (`audit::witness`) and the tombstone file (`crypto::vault`). What both need from a file
//! that must survive crashes and say when it was damaged:
//!
//! - one `write` per append on a file opened with `O_APPEND`, so lines written by several
//!   processes do not interleave;
//! - newline-safe: when the file does not end with a newline (a write torn by a crash), the
//!   append starts with one, so the new line is never glued to the torn one;
//! - every line ends with `\tc=` and the first 16 hex digits of the SHA-256 of what precedes
//!   it: a torn or edited line is found, and reported by its number, never skipped;
//! - `fsync` of the file (and of its directory when the file was created) before returning.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

const CHECK_TAG: &str = "\tc=";
const CHECK_HEX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LineFileError {
    #[error("cannot use {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: damaged (torn write or edited by hand): its checksum does not match")]
    Damaged { path: PathBuf, line: usize },
}

/// One line read back: its payload, and whether a checksum vouched for it (lines written
/// before checksums existed carry none; callers decide whether they accept them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub payload: String,
    pub checked: bool,
}

/// The line as written: `payload \t c=CHECK`.
pub fn checksummed(payload: &str) -> String {
    format!("{payload}{CHECK_TAG}{}", check_of(payload))
}

fn check_of(payload: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, payload.as_bytes());
    crate::clock::hex(d.as_ref().get(..CHECK_HEX / 2).unwrap_or_default())
}

/// Appends `payloads` (which must not contain newlines: they are replaced by spaces) as
/// checksummed lines to `path`, creating it (mode 0600, and its directory) when missing.
pub fn append(path: &Path, payloads: &[String]) -> Result<(), LineFileError> {
    if payloads.is_empty() {
        return Ok(());
    }
    let io = |source| LineFileError::Io { path: path.to_owned(), source };
    let created = !path.exists();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io)?;
    let mut text = String::new();
    if !ends_with_newline(&mut f).map_err(io)? {
        text.push('\n');
    }
    for p in payloads {
        text.push_str(&checksummed(&p.replace(['\n', '\r'], " ")));
        text.push('\n');
    }
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    if created && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Whether the file is empty or ends with a newline.
fn ends_with_newline(f: &mut std::fs::File) -> std::io::Result<bool> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last == *b"\n")
}

/// Every non-empty line of `path`, or `None` when the file does not exist. A line whose
/// checksum does not match is an error naming it. A line without any checksum is returned
/// unchecked.
pub fn read(path: &Path) -> Result<Option<Vec<Line>>, LineFileError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LineFileError::Io { path: path.to_owned(), source }),
    };
    let mut lines = Vec::new();
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let number = i + 1;
        let damaged = || LineFileError::Damaged { path: path.to_owned(), line: number };
        let line = std::str::from_utf8(raw).map_err(|_| damaged())?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = match line.rsplit_once(CHECK_TAG) {
            Some((payload, check)) if check == check_of(payload) => {
                Line { number, payload: payload.to_owned(), checked: true }
            }
            Some(_) => return Err(damaged()),
            None => Line { number, payload: line.to_owned(), checked: false },
        };
        lines.push(parsed);
    }
    Ok(Some(lines))
}

/// Creates `path` (and its directory) readable by its owner only and writes a private key into
/// it, synced; fails with `AlreadyExists` when another process created it first.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_torn_line_is_an_error_that_does_not_swallow_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/f.log");
        assert_eq!(read(&path).unwrap(), None);
        append(&path, &["a\tb".to_owned(), "two\nlines".to_owned()]).unwrap();
        let lines = read(&path).unwrap().unwrap();
        assert_eq!(lines.iter().map(|l| l.payload.as_str()).collect::<Vec<_>>(), ["a\tb", "two lines"]);
        assert!(lines.iter().all(|l| l.checked));

        // A crash tore the next write: half a line, no newline.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"c\tc=0123").unwrap();
        drop(f);
        assert!(matches!(read(&path), Err(LineFileError::Damaged { line: 3, .. })));
        // The next append starts on a line of its own: it stays readable.
        append(&path, &["d".to_owned()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(&format!("\n{}\n", checksummed("d"))), "{text:?}");

        // An edited line is an error too.
        std::fs::write(&path, text.replace("a\tb", "a\tX")).unwrap();
        assert!(matches!(read(&path), Err(LineFileError::Damaged { line: 1, .. })));
    }
}
