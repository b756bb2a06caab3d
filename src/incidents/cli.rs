//! `guichet incident list|show|export|record`: the breach register for operators and the
//! DPO at a terminal. `record` reads an incident from a TOML or JSON file (the fields of
//! [`IncidentFacts`], times in RFC 3339); every change is journaled with the operator
//! (`system`, role `operator`) as actor, like `guichet rights`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::cnil::{self, Organisation};
use super::model::IncidentFacts;
use super::{IncidentError, IncidentRegister};
use crate::audit::{ActorKind, Reader};

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Every incident, most recently discovered first, with its 72-hour deadline and state.
    List,
    /// One incident, as JSON.
    Show { reference: String },
    /// One incident on the CNIL notification form's fields, as JSON (or printable HTML, or
    /// an ODS spreadsheet written to `--out`).
    Export {
        reference: String,
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        /// Where to write the ODS file (required with `--format ods`: it is binary).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record an incident from a TOML (`.toml`) or JSON file.
    Record { file: PathBuf },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
    Html,
    Ods,
}

/// The operator at the terminal, as the journal names them.
fn operator() -> anyhow::Result<Reader> {
    Reader::new(ActorKind::System, "guichet-cli", "operator").context("the operator's journal id")
}

/// Reads an incident file: TOML when its name ends in `.toml`, JSON otherwise.
pub fn read_facts(file: &std::path::Path) -> anyhow::Result<IncidentFacts> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let is_toml = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let facts = if is_toml {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message()))?
    } else {
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", file.display(), e.line(), e.column()))?
    };
    Ok(facts)
}

pub async fn run(
    register: &IncidentRegister,
    org: &Organisation,
    command: IncidentCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let now = register.now();
    match command {
        IncidentCommand::List => {
            for i in register.all().await? {
                writeln!(
                    out,
                    "{}\taware {}\tdeadline {}\t{}",
                    i.id,
                    rfc3339(i.facts.aware_at),
                    rfc3339(i.deadline()),
                    cnil::state(i.notification(now))
                )?;
            }
        }
        IncidentCommand::Show { reference } => {
            let i = register.get(&reference).await?.ok_or(IncidentError::NotFound)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&i)?)?;
        }
        IncidentCommand::Export { reference, format, out: file } => {
            let i = register.get(&reference).await?.ok_or(IncidentError::NotFound)?;
            if matches!(format, ExportFormat::Ods) && file.is_none() {
                anyhow::bail!("--format ods writes a file: give it with --out FILE.ods");
            }
            register.journal_export(&operator()?, &i.id).await?;
            match format {
                ExportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&cnil::to_json(&i, org, now))?)?,
                ExportFormat::Html => {
                    let chrome = crate::pages::Chrome::public();
                    writeln!(out, "{}", cnil::to_html(&i, org, &chrome, now)?)?;
                }
                ExportFormat::Ods => {
                    let path = file.context("--out is required with --format ods")?;
                    let body = cnil::to_ods(&i, org, now)?;
                    std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
                    writeln!(out, "{} written.", path.display())?;
                }
            }
        }
        IncidentCommand::Record { file } => {
            let facts = read_facts(&file)?;
            let i = register.record(&operator()?, facts).await?;
            writeln!(out, "incident {} recorded; notify the CNIL by {} (72 hours).", i.id, rfc3339(i.deadline()))?;
        }
    }
    Ok(())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
