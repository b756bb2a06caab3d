//! `guichet retention plan|run|hold …` for operators and the DPO. `plan` changes nothing;
//! `run` takes the same lease as the scheduler's runs, shows a progress bar and can be run
//! again after an interruption: each record is acted on once.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::run::{Options, Report};
use crate::app::{Application, Deps};
use crate::config::Validated;

#[derive(Debug, Clone, Subcommand)]
pub enum RetentionCommand {
    /// What a run would do (dry run): counts per activity, category, phase and action.
    Plan(DateArg),
    /// Apply the retention rules now.
    Run(DateArg),
    /// DPO holds: data of (subject, activity) that runs must skip.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Delete the gateway's own records whose duration has passed (`[retention.own_data]`),
    /// now, as the daily job does; journaled with the counts. `--plan`: counts only.
    OwnData(OwnDataArgs),
    /// Elimination lists (bordereaux d'élimination) for the archivist's visa.
    #[command(subcommand)]
    Eliminations(EliminationCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum EliminationCommand {
    /// Every list: reference, producing service, lines, visa.
    List,
    /// One list, line by line (hashed record ids only).
    Show { reference: String },
    /// Writes the bordereau as ODS.
    Export {
        reference: String,
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Records the archivist's visa: every line not refused is approved; the next run
    /// destroys them.
    Visa {
        reference: String,
        /// The archivist's agent id (as in the journal).
        #[arg(long)]
        by: String,
        /// The archives service's own reference for the visa.
        #[arg(long)]
        visa_reference: Option<String>,
    },
    /// Refuses one line (`--line`, its record hash) or every undecided line: kept for good.
    Refuse {
        reference: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        line: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct OwnDataArgs {
    /// Dry run: what would be deleted now, counted per kind; nothing is deleted or journaled.
    #[arg(long)]
    pub plan: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DateArg {
    /// Plan or run as of this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HoldCommand {
    Add {
        /// The citizen's field pseudonym (as in the journal).
        #[arg(long)]
        subject: String,
        #[arg(long)]
        activity: String,
        /// Why (a litigation, an inspection…), kept with the hold.
        #[arg(long)]
        reason: String,
    },
    Remove {
        #[arg(long)]
        subject: String,
        #[arg(long)]
        activity: String,
    },
    List,
}

pub async fn run(config: Validated, command: RetentionCommand) -> anyhow::Result<()> {
    let source = crate::policy::PolicySource::Dir(config.settings.policy.dir.clone());
    let application = build(config, Deps::default(), source).await?;
    execute(&application.state(), command).await
}

/// The services of `serve`, without its listeners: nothing is served.
pub async fn build(
    mut config: Validated,
    deps: Deps,
    source: crate::policy::PolicySource,
) -> anyhow::Result<Application> {
    config.settings.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.settings.admin.enabled = false;
    Application::build_with_policies(config, deps, source).await
}

/// Runs one command on a built gateway (`guichet retention …`, `guichet demo retention …`).
pub async fn execute(app: &crate::app::AppState, command: RetentionCommand) -> anyhow::Result<()> {
    let app = app.clone();
    let mut out = std::io::stdout();
    let result = match command {
        RetentionCommand::Plan(d) => {
            let today = day(&app, d.date.as_deref())?;
            let report = super::run::run(&app, Options { today, dry_run: true }, &|_| {}).await?;
            print_report(&mut out, &report, true)
        }
        RetentionCommand::Run(d) => {
            let today = day(&app, d.date.as_deref())?;
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {pos} enregistrements lus {msg}") {
                bar.set_style(style);
            }
            let report = super::run::run(&app, Options { today, dry_run: false }, &|n| bar.set_position(n))
                .await
                .context("the retention run stopped; run it again to resume")?;
            bar.finish_and_clear();
            print_report(&mut out, &report, false)
        }
        RetentionCommand::Hold(h) => hold(&app, h, &mut out).await,
        RetentionCommand::OwnData(a) => own_data(&app, a.plan, &mut out).await,
        RetentionCommand::Eliminations(e) => eliminations(&app, e, &mut out).await,
    };
    // Queued jobs (telling applications, notices) run in `serve`; the journal is flushed here.
    app.audit.shutdown().await;
    result
}

fn day(app: &crate::app::App, given: Option<&str>) -> anyhow::Result<time::Date> {
    match given {
        None => Ok(super::run::today(app)),
        Some(d) => time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
            .with_context(|| format!("`{d}` is not a date: write YYYY-MM-DD")),
    }
}

fn print_report(out: &mut impl Write, r: &Report, dry: bool) -> anyhow::Result<()> {
    writeln!(out, "{:<24} {:<20} {:<13} {:<15} {:>8}", "activity", "category", "phase", "action", "records")?;
    for ((activity, category, phase, action), n) in &r.lines {
        writeln!(out, "{activity:<24} {category:<20} {phase:<13} {action:<15} {n:>8}")?;
    }
    let verb = if dry { "would act on" } else { "acted on" };
    let due: u64 = r
        .lines
        .iter()
        .filter(|((_, _, _, a), _)| !matches!(a.as_str(), "none" | "held" | "no_rule"))
        .map(|(_, n)| n)
        .sum();
    let acted = if dry { due } else { r.acted };
    writeln!(
        out,
        "{} records read; {verb} {acted}; {} skipped under a hold; {} overdue.",
        r.records, r.skipped_holds, r.overdue
    )?;
    Ok(())
}

async fn own_data(app: &crate::app::App, plan: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let purged = if plan {
        let d = &app.settings.retention.own_data;
        crate::housekeeping::plan_own_data(&app.store, d, app.clock.now()).await?
    } else {
        crate::housekeeping::purge_and_journal(app).await?
    };
    writeln!(out, "{:<16} {:>8}", "kind", if plan { "would delete" } else { "deleted" })?;
    for p in purged {
        writeln!(out, "{:<16} {:>8}", p.kind.name(), p.count)?;
    }
    Ok(())
}

async fn hold(app: &crate::app::App, h: HoldCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match h {
        HoldCommand::Add { subject, activity, reason } => {
            if reason.trim().is_empty() {
                anyhow::bail!("a hold needs a reason (--reason)");
            }
            app.retention.hold(&subject, &activity, reason.trim()).await?;
            super::journal_hold(app, &subject, &activity, "retention_hold_add").await?;
            writeln!(out, "Hold added: runs skip this subject's data in `{activity}`.")?;
        }
        HoldCommand::Remove { subject, activity } => {
            if app.retention.release(&subject, &activity).await? {
                super::journal_hold(app, &subject, &activity, "retention_hold_remove").await?;
                writeln!(out, "Hold removed.")?;
            } else {
                writeln!(out, "No such hold.")?;
            }
        }
        HoldCommand::List => {
            for h in app.retention.holds().await? {
                let since =
                    crate::audit::event::from_micros(h.since_us).map(|t| t.date().to_string()).unwrap_or_default();
                writeln!(out, "{}\t{}\t{since}\t{}", h.subject, h.activity, h.reason)?;
            }
        }
    }
    Ok(())
}

async fn eliminations(app: &crate::app::App, e: EliminationCommand, out: &mut impl Write) -> anyhow::Result<()> {
    use super::elimination;
    let one = |reference: &str| {
        let reference = reference.to_owned();
        async move {
            app.retention
                .elimination_list(&reference)
                .await?
                .with_context(|| format!("no elimination list {reference}"))
        }
    };
    match e {
        EliminationCommand::List => {
            for l in app.retention.elimination_lists().await? {
                let lines = app.retention.elimination_list(&l.reference).await?.map_or(0, |l| l.lines.len());
                let visa =
                    l.visa_at_us.and_then(super::date_of).map_or_else(|| "waiting".to_owned(), |d| format!("visa {d}"));
                writeln!(out, "{}\t{}\t{lines} lines\t{visa}", l.reference, l.producing_service)?;
            }
        }
        EliminationCommand::Show { reference } => {
            let list = one(&reference).await?;
            writeln!(out, "{}\t{}", list.list.reference, list.list.producing_service)?;
            for l in &list.lines {
                let decision = l.decision.as_deref().unwrap_or("undecided");
                let destroyed = if l.destroyed_at_us.is_some() { "\tdestroyed" } else { "" };
                writeln!(out, "{}\t{}\t{}\t{decision}{destroyed}", l.record_hash, l.activity, l.category)?;
            }
        }
        EliminationCommand::Export { reference, out: file } => {
            let list = one(&reference).await?;
            let bytes = elimination::to_ods(&elimination::bordereau(app, &list))?;
            std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
            writeln!(out, "Bordereau written to {}.", file.display())?;
        }
        EliminationCommand::Visa { reference, by, visa_reference } => {
            let n = elimination::visa(app, &reference, &by, visa_reference.as_deref()).await?;
            writeln!(out, "Visa recorded: {n} lines approved; the next run destroys them.")?;
        }
        EliminationCommand::Refuse { reference, by, reason, line } => {
            let n = elimination::refuse(app, &reference, line.as_deref(), &by, &reason).await?;
            writeln!(out, "{n} lines refused: kept for good.")?;
        }
    }
    Ok(())
}
