//! `guichet rights list|show|extend|refuse|complete|lift|task`: the DPO's queue for operators,
//! through the same services (and so the same rules, notices and journal) as the API. The
//! actor journaled is the system, as `operator`. Output is a plain table or, with `--json`,
//! the API's JSON.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use super::dpo_api::{HandlerView, handler_view_on, task_view};
use super::ops::TaskOutcome;
use super::request::{Refusal, RefusalGround, Status};
use super::service::{Answer, By, RightsError, parse_date};
use crate::app::App;
use crate::audit::{Actor, ActorKind, Ident};
use crate::clock::paris_date;

#[derive(Debug, Subcommand)]
pub enum RightsCommand {
    /// Write the access or portability export of a request to a file (zip, or age-encrypted).
    Export(crate::rights::export::cli::ExportArgs),
    /// Requests not answered yet, oldest first (or every request of one subject).
    List {
        /// Every request of this pseudonymous subject id, newest first, answered ones too.
        #[arg(long, value_name = "ID")]
        subject: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// One request in full.
    Show {
        /// The reference, e.g. DR-7K3M-Q9XP.
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Extend the deadline by one or two months (Art. 12(3)); only before the first month
    /// ends, with a reason, once the citizen has been told.
    Extend {
        id: String,
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
        months: u8,
        /// Why (told to the citizen).
        #[arg(long)]
        reason: String,
        /// When the citizen was told (YYYY-MM-DD); default: today.
        #[arg(long, value_name = "DATE")]
        notice_sent_on: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Refuse a request, with its ground and its reason in plain French; the answer states
    /// the remedies.
    Refuse {
        id: String,
        #[arg(long, value_enum, default_value = "decision")]
        ground: Ground,
        /// The reason, in plain French (told to the citizen).
        #[arg(long)]
        reason: String,
        /// An earlier request of the same citizen proving it unfounded or excessive (repeat).
        #[arg(long = "earlier", value_name = "ID")]
        earlier: Vec<String>,
        /// The article excluding the right (with `--ground not-applicable`).
        #[arg(long, default_value = "")]
        article: String,
        #[command(flatten)]
        out: Output,
    },
    /// Answer a request: done, or done in part (`--partly`). A request still `received` is
    /// first moved to `in_progress` (both steps journaled).
    Complete {
        id: String,
        /// What was done, in plain French (told to the citizen).
        #[arg(long)]
        summary: String,
        #[arg(long)]
        partly: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Lift the Art. 18 restriction a request put in place; each application is told.
    Lift {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Tasks an agent does by hand ("à traiter à la main").
    #[command(subcommand)]
    Task(TaskCommand),
    /// Show the citizen's pseudonym in each sector, from the pseudonyms recorded with their
    /// request: the one way to join a citizen's sectors, journaled on the request with its
    /// reason.
    Link {
        id: String,
        /// Why the sectors are joined: litigation, inspection, subject_request or
        /// legal_obligation.
        #[arg(long, value_parser = parse_link_reason)]
        reason: super::sectors::LinkReason,
        #[command(flatten)]
        out: Output,
    },
    /// Shred an anonymous record's sealed fields (activity `anonymous = "sealed"`): destroys
    /// its data key, so its values show as "[donnée protégée]" everywhere. Journaled.
    EraseRecord {
        /// The record id the application received (`X-Guichet-Record`, `anonyme:…`), or one
        /// of the record's tokens (`gch2.…`).
        target: String,
        /// The processing activity (policy id); needed with a record id.
        #[arg(long)]
        activity: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// The open tasks, oldest first.
    List,
    /// Close the task of one activity of a request with its answer; the request is
    /// completed once every activity has answered.
    Done {
        id: String,
        /// The processing activity (policy id).
        activity: String,
        /// What was done, or why it was refused, in plain French (told to the citizen).
        #[arg(long)]
        answer: String,
        /// The service refused what was asked (the answer says why).
        #[arg(long)]
        refused: bool,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print JSON (the API's representation) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Ground {
    /// Decided by an authorised agent.
    Decision,
    /// Manifestly unfounded or excessive (Art. 12(5)); needs `--earlier`.
    UnfoundedOrExcessive,
    /// The right does not apply to the activity's legal basis; give `--article`.
    NotApplicable,
}

fn parse_link_reason(s: &str) -> Result<super::sectors::LinkReason, String> {
    super::sectors::LinkReason::parse(s).ok_or_else(|| {
        let names: Vec<&str> = super::sectors::LinkReason::ALL.iter().map(|r| r.as_str()).collect();
        format!("one of: {}", names.join(", "))
    })
}

/// Runs one command, writing its result to `out`.
pub async fn run(app: &App, command: RightsCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let service = &app.rights;
    let today = paris_date(app.clock.now());
    let by = operator()?;
    let list = matches!(command, RightsCommand::List { .. });
    let (requests, output) = match command {
        RightsCommand::Export(_) => {
            anyhow::bail!("exports are written by `guichet rights export` (cli::rights_export)")
        }
        RightsCommand::List { subject: Some(s), out } => (service.of_subject(&s).await?, out),
        RightsCommand::List { subject: None, out } => (service.open().await?, out),
        RightsCommand::Show { id, out } => (vec![service.get(&id).await?], out),
        RightsCommand::Extend { id, months, reason, notice_sent_on, out } => {
            let notice = match notice_sent_on.as_deref() {
                Some(d) => parse_date(d).ok().context("--notice-sent-on is a date, YYYY-MM-DD")?,
                None => today,
            };
            let r = service.extend(&id, months, reason, notice, &by).await?;
            crate::notify::rights_extended(app, &r).await;
            (vec![r], out)
        }
        RightsCommand::Refuse { id, ground, reason, earlier, article, out } => {
            let ground = match ground {
                Ground::Decision => RefusalGround::Decision,
                Ground::UnfoundedOrExcessive => RefusalGround::UnfoundedOrExcessive { earlier_requests: earlier },
                Ground::NotApplicable => RefusalGround::NotApplicable { article },
            };
            let r = service.refuse(&id, Refusal { ground, reason }, &by).await?;
            super::ops::tell_if_answered(app, &r).await;
            (vec![r], out)
        }
        RightsCommand::Complete { id, summary, partly, out } => {
            if summary.trim().is_empty() {
                anyhow::bail!("an answer needs its summary for the citizen (--summary)");
            }
            if service.get(&id).await?.status == Status::Received {
                service.advance(&id, Status::InProgress, None, &by).await?;
            }
            let to = if partly { Status::PartlyCompleted } else { Status::Completed };
            let r = service.advance(&id, to, Some(summary), &by).await?;
            super::ops::tell_if_answered(app, &r).await;
            (vec![r], out)
        }
        RightsCommand::Lift { id, out: output } => {
            if service.get(&id).await?.right != super::request::Right::Restriction {
                anyhow::bail!("only a restriction request can be lifted");
            }
            let n = super::ops::lift(app, &id, &by).await?;
            writeln!(out, "{n} activit{} lifted.", if n == 1 { "y" } else { "ies" })?;
            (vec![service.get(&id).await?], output)
        }
        RightsCommand::Link { id, reason, out: output } => {
            // The request exists (else "no such request"); `NotFound` from the join then means
            // its citizen recorded no pseudonyms, which the operator must be told as such.
            service.get(&id).await?;
            let ids = match super::sectors::link(app, &id, reason, &by).await {
                Err(RightsError::NotFound) => anyhow::bail!(
                    "the citizen of {id} recorded no pseudonyms (no online account, or a request older than them): \
                     their sectors cannot be joined"
                ),
                other => other?,
            };
            if output.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({ "sectors": ids }))?)?;
            } else {
                for s in ids {
                    writeln!(out, "{}  field {}  consent {}", s.sector, s.field, s.consent)?;
                }
            }
            return Ok(());
        }
        RightsCommand::EraseRecord { target, activity } => {
            let done = super::erasure::erase_record(app, &target, activity.as_deref()).await?;
            writeln!(out, "record {} of {}: {} data key(s) destroyed.", done.record, done.activity, done.keys)?;
            return Ok(());
        }
        RightsCommand::Task(TaskCommand::List) => {
            let tasks: Vec<_> = service.manual_tasks().await?.iter().map(task_view).collect();
            if tasks.is_empty() {
                writeln!(out, "no task.")?;
            }
            for t in tasks {
                writeln!(out, "{}  {}  {}  {}", t.request_id, t.activity, t.since, t.reason.unwrap_or_default())?;
            }
            return Ok(());
        }
        RightsCommand::Task(TaskCommand::Done { id, activity, answer, refused, out }) => {
            if answer.trim().is_empty() {
                anyhow::bail!("a task needs its answer for the citizen (--answer)");
            }
            let outcome = if refused { TaskOutcome::Refused } else { TaskOutcome::Completed };
            (vec![super::ops::close_task(app, &id, &activity, outcome, &answer, &by).await?], out)
        }
    };
    let mut views: Vec<HandlerView> = requests.iter().map(|r| handler_view_on(today, r)).collect();
    // One request's detail: what the applications answered when its restriction was lifted.
    if let ([r], [v], false) = (requests.as_slice(), views.as_mut_slice(), list) {
        v.lifted = super::dpo_api::lifted_views(app, r).await?;
    }
    if output.json {
        let json = match views.as_slice() {
            [one] if !list => serde_json::to_string_pretty(one)?,
            _ => serde_json::to_string_pretty(&serde_json::json!({ "requests": views }))?,
        };
        writeln!(out, "{json}")?;
    } else {
        write_table(out, &views)?;
        if let [one] = views.as_slice()
            && !list
        {
            write_details(out, one)?;
        }
    }
    Ok(())
}

/// The journal's actor for the command line: the system, as the operator.
fn operator() -> anyhow::Result<By> {
    Ok(By { actor: Actor { kind: ActorKind::System, id: Ident::new("operator")? }, role: Ident::new("operator")? })
}

/// What the table leaves out, for one request.
fn write_details(out: &mut dyn Write, v: &HandlerView) -> std::io::Result<()> {
    writeln!(out, "subject: {}", v.subject)?;
    writeln!(out, "received: {}", v.request.received_at)?;
    let identity = match (&v.identity.acr, &v.identity.document) {
        (Some(acr), _) => format!("sign-in ({acr})"),
        (_, Some(doc)) => format!("document checked by an agent ({})", serde_json::json!(doc).as_str().unwrap_or("")),
        _ => v.identity.method.to_owned(),
    };
    writeln!(out, "identity: {identity}")?;
    if let Some(agent) = &v.agent {
        writeln!(out, "recorded by: {agent}")?;
    }
    for e in &v.extensions {
        writeln!(out, "extended: {} month(s), notice sent on {}: {}", e.months, e.notice_sent_on, e.reason)?;
    }
    for l in &v.lifted {
        let at = l.answered_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        writeln!(out, "restriction lifted, {} answered: {} ({at})", l.activity, l.status)?;
    }
    match &v.request.answer {
        Some(Answer::Done { summary }) => writeln!(out, "answer: {summary}")?,
        Some(Answer::Refused { refusal, .. }) => writeln!(out, "refused: {}", refusal.reason)?,
        None => {}
    }
    Ok(())
}

fn write_table(out: &mut dyn Write, views: &[HandlerView]) -> std::io::Result<()> {
    if views.is_empty() {
        return writeln!(out, "no request.");
    }
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|v| {
            let r = &v.request;
            let late = if r.overdue {
                "LATE".to_owned()
            } else if v.paused {
                "paused".to_owned()
            } else {
                format!("{} d left", v.days_left)
            };
            [
                r.id.clone(),
                r.right.as_str().to_owned(),
                r.activity.clone().unwrap_or_else(|| "(all)".to_owned()),
                r.channel.as_str().to_owned(),
                r.status.as_str().to_owned(),
                r.due_on.clone(),
                late,
            ]
        })
        .collect();
    let header = ["REFERENCE", "RIGHT", "ACTIVITY", "CHANNEL", "STATUS", "DUE", "DEADLINE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// The gateway's services for a command, built from its configuration like `serve` builds
/// them, without listening or running jobs: what the command queues, the serving gateway does.
pub async fn services(mut config: crate::config::Validated) -> anyhow::Result<crate::app::AppState> {
    config.settings.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.settings.admin.enabled = false;
    let application = crate::app::Application::build(config, crate::app::Deps::default()).await?;
    Ok(application.state())
}
