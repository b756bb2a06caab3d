//! `guichet rights export <request-id> --out FILE [--age-recipient R]`: the export of one
//! request written to a file, for the counter (print `donnees.html`) or to send by e-mail or
//! post (age-encrypted). A progress bar on standard error shows the steps of a long export.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Owner, render};
use crate::audit::{Actor, Ident};
use crate::config::Validated;
use crate::rights::service::By;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The request's reference, e.g. DR-7K3M-Q9XP.
    pub request_id: String,
    /// Where to write the archive (created with owner-only permissions).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Encrypt the archive for this age recipient (`age1…`), to send by e-mail or post.
    #[arg(long, value_name = "RECIPIENT")]
    pub age_recipient: Option<String>,
}

/// Steps of an export, as the progress bar names them.
const STEPS: [&str; 4] = [
    "lecture de la demande",
    "réponses des services et données du guichet",
    "écriture de l'archive",
    "enregistrement au journal",
];

pub async fn run(config: Validated, args: &ExportArgs) -> anyhow::Result<()> {
    let app = crate::rights::cli::services(config).await?;
    let bar = progress();

    bar.set_message(STEPS[0]);
    let request = app.rights.get(&args.request_id).await.context("no rights request with this reference")?;
    let owner = Owner {
        subject: request.subject.clone(),
        field_subject: app.exports.field_subject_of(&request).await?,
        sectors: super::recorded_sectors(&app, &request).await?,
        claims: None,
    };
    bar.inc(1);

    bar.set_message(STEPS[1]);
    let export = app.exports.build(&app, &request, &owner).await?;
    bar.inc(1);

    bar.set_message(STEPS[2]);
    let archive = render::archive(&export)?;
    let bytes = match &args.age_recipient {
        Some(r) => render::age_encrypt(&archive, r)?,
        None => archive,
    };
    write_private(&args.out, &bytes)?;
    bar.inc(1);

    bar.set_message(STEPS[3]);
    let by = By { actor: Actor::system(), role: Ident::new("operator").context("role")? };
    let stage = if args.age_recipient.is_some() { "export_written_age" } else { "export_written" };
    super::journal(&app, &request, stage, &by).await?;
    app.audit.shutdown().await;
    bar.inc(1);
    bar.finish_and_clear();

    let unopened = if owner.field_subject.is_none() {
        " The citizen's encrypted values could not be opened: no export was made from their session yet."
    } else {
        ""
    };
    let _ = writeln!(
        std::io::stdout(),
        "Export of {} written to {} ({} activities).{unopened}",
        request.id,
        args.out.display(),
        export.activities.len()
    );
    Ok(())
}

fn progress() -> ProgressBar {
    let bar = ProgressBar::new(STEPS.len() as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:24} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// Writes `bytes` to `path`, readable by its owner only: the clear archive holds personal data.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
