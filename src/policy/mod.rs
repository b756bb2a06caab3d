//! Processing activities as code: one TOML file per activity (*traitement*) drives
//! enforcement (`engine`), the Art. 30 register (`register`) and the citizen notices
//! (`notice`), so the three can never disagree. Schema: docs/policies.md.

pub mod bindings;
pub mod engine;
pub mod falc;
pub mod gateway;
pub mod load;
pub mod model;
pub mod notice;
pub mod pages;
pub mod register;
pub mod retention_class;
pub mod sector;
pub mod validate;

use std::fmt;

pub use engine::{Decision, PolicySet, Processing, RequestFacts, decide};
pub use load::{PolicySource, SourceFile, load};
pub use retention_class::retention_class;
pub use sector::Sector;

/// One thing wrong with the policies, located in its file when possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// `(file, line, column)`, 1-based; absent for problems of the configuration as a whole.
    pub location: Option<(String, usize, usize)>,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((file, line, column)) = &self.location {
            write!(f, "{file}:{line}:{column}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one pass, so the DPO fixes them all at once.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PolicyError {
    pub problems: Vec<PolicyProblem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "the policies have {n} problem{}:", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}
