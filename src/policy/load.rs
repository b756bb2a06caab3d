//! Reading policy files (from a directory, or from memory) and parsing each one, with the
//! line and column of every key so that each problem points at its place in the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::engine::PolicySet;
use super::model::ActivityFile;
use super::{PolicyError, PolicyProblem, validate};
use crate::config::{RouteSettings, line_col, walk_table};
use crate::routing::RouteTable;

/// One policy file's name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// The example policies shipped in `policies/`, embedded so that `guichet demo` works from
/// any directory with no set-up.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("cantine.toml", include_str!("../../policies/cantine.toml")),
    ("etat-civil.toml", include_str!("../../policies/etat-civil.toml")),
    ("voirie.toml", include_str!("../../policies/voirie.toml")),
    ("lettre-information.toml", include_str!("../../policies/lettre-information.toml")),
    ("ccas-rendez-vous.toml", include_str!("../../policies/ccas-rendez-vous.toml")),
    ("liste-electorale.toml", include_str!("../../policies/liste-electorale.toml")),
];

/// Where a policy set comes from; read again on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Every `*.toml` file of a directory. A missing directory is an empty set (the route
    /// coverage rule then says which routes lack an activity).
    Dir(PathBuf),
    /// The directory when it exists, else the embedded examples (the demo).
    DirOrEmbedded(PathBuf),
    /// Files given in memory (tests, the embedded examples).
    Memory(Vec<SourceFile>),
}

impl PolicySource {
    /// The files, and a description of where they came from for messages.
    pub fn read(&self) -> Result<(Vec<SourceFile>, String), PolicyError> {
        match self {
            Self::Dir(dir) => Ok((read_dir(dir)?.unwrap_or_default(), dir.display().to_string())),
            Self::DirOrEmbedded(dir) => match read_dir(dir)? {
                Some(files) => Ok((files, dir.display().to_string())),
                None => Ok((embedded_examples(), "the embedded example policies".to_owned())),
            },
            Self::Memory(files) => Ok((files.clone(), "policies given in memory".to_owned())),
        }
    }

    /// The directory to watch for changes, if any.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Dir(d) | Self::DirOrEmbedded(d) => Some(d),
            Self::Memory(_) => None,
        }
    }
}

pub fn embedded_examples() -> Vec<SourceFile> {
    EXAMPLES.iter().map(|(n, t)| SourceFile { name: (*n).to_owned(), text: (*t).to_owned() }).collect()
}

/// The `*.toml` files of `dir`, sorted by name; `None` when the directory does not exist.
pub fn read_dir(dir: &Path) -> Result<Option<Vec<SourceFile>>, PolicyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unlocated(format!("cannot read the policy directory {}: {e}", dir.display()))),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => files.push(SourceFile { name: p.display().to_string(), text }),
            Err(e) => {
                problems.push(PolicyProblem { location: None, message: format!("cannot read {}: {e}", p.display()) })
            }
        }
    }
    if problems.is_empty() { Ok(Some(files)) } else { Err(PolicyError { problems }) }
}

fn unlocated(message: String) -> PolicyError {
    PolicyError { problems: vec![PolicyProblem { location: None, message }] }
}

/// Key path (`purposes[0].legal_basis`) → line and column, from toml_edit's spans.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    keys: HashMap<String, (usize, usize)>,
}

impl KeyIndex {
    fn build(text: &str) -> Self {
        let mut keys = HashMap::new();
        if let Ok(doc) = toml_edit::Document::parse(text) {
            walk_table(doc.as_table(), "", &mut |key, offset| {
                keys.insert(key, line_col(text, offset));
            });
        }
        Self { keys }
    }

    /// Where `key` is written; falls back to its nearest written parent, then to the top.
    pub fn locate(&self, key: &str) -> (usize, usize) {
        let mut k = key;
        loop {
            if let Some(at) = self.keys.get(k) {
                return *at;
            }
            match k.rfind(['.', '[']).and_then(|i| k.get(..i)) {
                Some(parent) => k = parent,
                None => return (1, 1),
            }
        }
    }
}

/// One parsed file, with what is needed to locate its keys.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub name: String,
    pub activity: ActivityFile,
    pub index: KeyIndex,
}

impl Parsed {
    pub fn problem(&self, key: &str, message: impl Into<String>) -> PolicyProblem {
        let (line, column) = self.index.locate(key);
        PolicyProblem { location: Some((self.name.clone(), line, column)), message: message.into() }
    }
}

/// Parses every file; syntax errors, wrong types and unknown keys become located problems.
pub fn parse(files: &[SourceFile]) -> (Vec<Parsed>, Vec<PolicyProblem>) {
    let mut parsed = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for f in files {
        match toml::from_str::<ActivityFile>(&f.text) {
            Ok(activity) => parsed.push(Parsed { name: f.name.clone(), activity, index: KeyIndex::build(&f.text) }),
            Err(e) => {
                let (line, column) = e.span().map_or((1, 1), |s| line_col(&f.text, s.start));
                problems.push(PolicyProblem {
                    location: Some((f.name.clone(), line, column)),
                    message: explain_parse_error(e.message()),
                });
            }
        }
    }
    (parsed, problems)
}

/// serde's messages name the key; add the hint a DPO needs.
fn explain_parse_error(message: &str) -> String {
    let m = message.trim_end();
    if m.starts_with("unknown field") {
        format!("{m} (unknown keys are refused: check the spelling against docs/policies.md)")
    } else if m.starts_with("missing field") {
        format!("{m} (this key is required)")
    } else {
        m.to_owned()
    }
}

/// Reads, parses and validates a whole policy set against the configured routes.
pub fn load(source: &PolicySource, routes: &RouteTable, settings: &[RouteSettings]) -> Result<PolicySet, PolicyError> {
    let (files, origin) = source.read()?;
    let (parsed, mut problems) = parse(&files);
    match validate::validate(&parsed, routes, settings, &origin) {
        Ok(set) if problems.is_empty() => Ok(set),
        Ok(_) => Err(PolicyError { problems }),
        Err(e) => {
            problems.extend(e.problems);
            Err(PolicyError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_example_policies_pass_the_check() {
        let set = load(&PolicySource::Memory(embedded_examples()), &RouteTable::default(), &[]).unwrap();
        assert_eq!(set.activities.len(), 6);
    }

    #[test]
    fn the_embedded_examples_are_the_files_in_policies() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let on_disk = read_dir(&dir).unwrap().unwrap();
        assert_eq!(on_disk.len(), EXAMPLES.len());
        for f in on_disk {
            assert!(EXAMPLES.iter().any(|(_, t)| *t == f.text), "{} is not embedded in load::EXAMPLES", f.name);
        }
    }

    #[test]
    fn keys_are_located_by_line_and_column() {
        let index = KeyIndex::build("version = 1\n[[purposes]]\nid = \"a\"\n\n[[purposes]]\nid = \"b\"\n");
        assert_eq!(index.locate("purposes[1].id"), (6, 1));
        assert_eq!(index.locate("purposes[1].legal_basis"), (5, 1));
        assert_eq!(index.locate("nothing"), (1, 1));
    }
}
