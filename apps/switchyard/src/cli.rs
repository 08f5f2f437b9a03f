//! The command line: `serve` (the default), `migrate status|up|plan`,
//! `outbox status|replay`, `runs list|show|retry|cancel` and
//! `accounts create|list|suspend|reactivate|disable|grant|revoke`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orchestration::{
    outbox::{OutboxStatus, ReplayFilter},
    saga::{RunDetails, RunFilter, RunState, RunStatus},
};
use uuid::Uuid;

use crate::application::{self, Application, ServeOptions, ShutdownSignal, StartError};
use std::time::Duration;

use crate::config::Config;
use crate::telemetry;

/// The configuration file read when none is named, if it exists.
const DEFAULT_CONFIG: &str = "switchyard.toml";

/// Switchyard: a modular monolith serving the inventory and orders API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file, which must exist when named [default: switchyard.toml,
    /// read if it exists]; `SWITCHYARD_*` variables override it.
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run the background workers (the default).
    Serve {
        /// Do not migrate on start; readiness fails while migrations are pending.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Inspect or apply each boundary's migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Inspect the outbox of every database, or replay dead events.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Inspect, retry or cancel saga runs (order placements).
    Runs {
        #[command(subcommand)]
        action: RunsAction,
    },
    /// Open accounts (the first administrator, say), move them through their
    /// lifecycle, grant and revoke roles.
    Accounts {
        #[command(subcommand)]
        action: AccountsAction,
    },
    /// Import a product feed into inventory, or show the imports that ran (those of
    /// the `vendor_sync` job too: `switchyard sync status` is the same).
    #[command(visible_alias = "sync")]
    Import {
        #[command(subcommand)]
        action: ImportAction,
    },
    /// Print the OpenAPI document of the HTTP API (as `GET /openapi.json` serves it).
    Openapi,
}

#[derive(Debug, Subcommand)]
enum ImportAction {
    /// Import a CSV feed (`sku,name,price_minor,currency,stock`; other columns ignored)
    /// from a file or an `http(s)://` URL: new products added, changed ones updated,
    /// `stock` the units on hand (reserved ones included). Resumable: run it again after
    /// a crash and it continues; the same feed again is skipped. Rejected rows go to
    /// `FILE.rejects.csv` (for a URL, `<its last segment>.rejects.csv` here).
    Products {
        /// The feed: a path, or an `http://` or `https://` URL.
        source: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
        chunk_size: u32,
    },
    /// The feed imports that ran last, newest first.
    Status {
        /// At most this many.
        #[arg(long, default_value_t = 10)]
        limit: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsAction {
    /// Open an active account (migrating first, so that it works on a fresh database).
    /// The password is read from the terminal without echo, or from one line of
    /// standard input when it is not a terminal; never from the command line.
    Create {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// Roles to grant: `admin`, `operator`, `catalog`, `customer` (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// What it is called [default: the email].
        #[arg(long)]
        name: Option<String>,
        /// `staff` or `customer`.
        #[arg(long, default_value = "staff")]
        kind: String,
    },
    /// Every account, with its status and roles.
    List,
    /// Suspend an account: it cannot log in, and its sessions end at once.
    Suspend {
        /// The account's email.
        email: String,
    },
    /// Make a suspended (or pending) account active again.
    Reactivate {
        /// The account's email.
        email: String,
    },
    /// Disable an account for good; its sessions end at once.
    Disable {
        /// The account's email.
        email: String,
    },
    /// Grant a role.
    Grant {
        /// The account's email.
        email: String,
        /// The role.
        role: String,
    },
    /// Revoke a role.
    Revoke {
        /// The account's email.
        email: String,
        /// The role.
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum RunsAction {
    /// Runs, newest first.
    List {
        /// Only runs in this state.
        #[arg(long, value_parser = parse_state)]
        status: Option<RunState>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One run: its input, steps, outputs, errors and timings.
    Show {
        /// The run's id.
        id: Uuid,
    },
    /// Make a failed run compensate again (a running instance's recovery drives it).
    Retry {
        /// The run's id.
        id: Uuid,
    },
    /// Cancel a run: a running run stops before its next step and undoes what took
    /// effect; a failed run is abandoned.
    Cancel {
        /// The run's id.
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// Per database and subscriber: pending, in flight and dead events, and how long
    /// the oldest pending event has waited.
    Status,
    /// Make dead events pending again, with their attempts reset.
    Replay {
        /// Only events of this type (e.g. `orders.order_placed`).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only deliveries to this subscriber.
        #[arg(long)]
        subscriber: Option<String>,
        /// Only events emitted at least this long ago (`30s`, `15m`, `2h`).
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Applied and pending migrations per boundary.
    Status,
    /// Apply every pending migration, boundary by boundary.
    Up,
    /// Pending migrations per boundary and the SQL they would run (from a dry run that
    /// is rolled back; PostgreSQL and SQLite).
    Plan,
}

impl Cli {
    /// Runs the command and returns the process's exit code.
    #[must_use]
    pub fn run(self) -> ExitCode {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
        };
        match runtime.block_on(self.run_async()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.to_string()),
        }
    }

    async fn run_async(self) -> Result<(), StartError> {
        let config = match &self.config {
            Some(file) => Config::load_required(file)?,
            None => Config::load(Path::new(DEFAULT_CONFIG))?,
        };
        let command = self.command.unwrap_or(Command::Serve { no_migrate: false });
        let telemetry = telemetry::init(&config.log);
        let result = run_command(command, &config).await;
        telemetry.shutdown();
        result
    }
}

async fn run_command(command: Command, config: &Config) -> Result<(), StartError> {
    match command {
        Command::Openapi => {
            let document = crate::http::document(config);
            let text = serde_json::to_string_pretty(&document).expect("the document is JSON");
            print_lines(&[text]);
            Ok(())
        }
        Command::Serve { no_migrate } => {
            // Before anything is connected or logged: a signal during start-up
            // then stops the app as soon as it serves, instead of killing it.
            let signal = ShutdownSignal::install().map_err(StartError::Signal)?;
            let options = ServeOptions {
                migrate: !no_migrate,
            };
            let app = Application::build(config, options).await?;
            app.run_until(signal.received()).await
        }
        Command::Migrate { action } => {
            // Only `migrate up` may create the databases it migrates.
            let creates = matches!(action, MigrateAction::Up);
            let fabric = application::connect(config, creates).await?;
            match action {
                MigrateAction::Status => print_lines(&fabric.databases().migration_status().await?),
                MigrateAction::Up => print_lines(&fabric.databases().migrate().await?),
                MigrateAction::Plan => print_lines(&fabric.databases().migration_plan().await?),
            }
            fabric.close().await;
            Ok(())
        }
        Command::Outbox { action } => {
            let fabric = application::connect(config, false).await?;
            let result = match action {
                OutboxAction::Status => fabric.events().status().await.map(|statuses| {
                    print_lines(&statuses.iter().map(OutboxReport).collect::<Vec<_>>());
                }),
                OutboxAction::Replay {
                    event_type,
                    subscriber,
                    older_than,
                } => {
                    let filter = ReplayFilter {
                        event_type,
                        subscriber,
                        older_than,
                    };
                    fabric.events().replay(&filter).await.map(|replayed| {
                        let lines: Vec<String> = replayed
                            .iter()
                            .map(|(database, count)| {
                                format!("{database}: {count} dead events made pending again")
                            })
                            .collect();
                        print_lines(&lines);
                    })
                }
            };
            fabric.close().await;
            Ok(result?)
        }
        Command::Import { action } => {
            let creates = matches!(action, ImportAction::Products { .. });
            let fabric = application::connect(config, creates).await?;
            let result = import(&fabric, action).await;
            fabric.close().await;
            result
        }
        Command::Accounts { action } => {
            let creates = matches!(action, AccountsAction::Create { .. });
            let fabric = application::connect(config, creates).await?;
            let result = accounts(&fabric, config, action).await;
            fabric.close().await;
            result
        }
        Command::Runs { action } => {
            let fabric = application::connect(config, false).await?;
            let result = match action {
                    RunsAction::List { status, limit } => {
                        let filter = RunFilter {
                            states: status.into_iter().collect(),
                            limit: Some(limit),
                        };
                        fabric.sagas().runs(&filter).await.map(|runs| {
                            if runs.is_empty() {
                                print_lines(&["no runs"]);
                            }
                            print_lines(&runs.iter().map(RunLine).collect::<Vec<_>>());
                        })
                    }
                    RunsAction::Show { id } => fabric
                        .sagas().run(id)
                        .await
                        .map(|run| print_lines(&[RunReport(&run)])),
                    RunsAction::Retry { id } => fabric.sagas().retry(id).await.map(|run| {
                        print_lines(&[
                            RunLine(&run.run).to_string(),
                            "compensation will resume on a running instance".to_owned(),
                        ]);
                    }),
                    RunsAction::Cancel { id } => fabric.sagas().cancel(id).await.map(|run| {
                        let next = if run.run.state == RunState::Cancelled {
                            "abandoned"
                        } else {
                            "cancellation requested: it stops before its next step and undoes what took effect"
                        };
                        print_lines(&[RunLine(&run.run).to_string(), next.to_owned()]);
                    }),
                };
            fabric.close().await;
            Ok(result?)
        }
    }
}

/// Runs an `import` action, printing what it did.
async fn import(fabric: &orchestration::Fabric, action: ImportAction) -> Result<(), StartError> {
    let failed = |err: crate::import::ImportError| StartError::Command(err.to_string());
    match action {
        ImportAction::Products { source, chunk_size } => {
            // Migrating first, so that it works on a fresh database.
            fabric.databases().migrate().await?;
            let source = crate::import::FeedSource::parse(&source);
            let report = source.rejects_report();
            let mut progress = crate::import::progress_for_stderr();
            let summary = crate::import::import_products(
                fabric,
                &source,
                chunk_size as usize,
                progress.as_mut(),
                Some(&report),
            )
            .await
            .map_err(failed)?;
            print_lines(&[summary]);
        }
        ImportAction::Status { limit } => {
            let conn = fabric.connection(inventory::SCHEMA)?;
            let imports = inventory::recent_feed_imports(conn, limit)
                .await
                .map_err(|err| StartError::Command(err.to_string()))?;
            if imports.is_empty() {
                print_lines(&["no feed imported yet"]);
            }
            let lines: Vec<String> = imports
                .iter()
                .map(|record| {
                    let c = record.counts;
                    let state = match record.finished_at {
                        Some(at) => format!("finished {at}"),
                        None => {
                            format!("unfinished after row {} (run it again)", record.position)
                        }
                    };
                    format!(
                        "{} {}: {state}; inserted {}, updated {}, unchanged {}, rejected {}",
                        &record.feed[..12.min(record.feed.len())],
                        record.source,
                        c.inserted,
                        c.updated,
                        c.unchanged,
                        c.rejected
                    )
                })
                .collect();
            print_lines(&lines);
        }
    }
    Ok(())
}

/// Runs an `accounts` action; what it did, as lines.
async fn accounts(
    fabric: &orchestration::Fabric,
    config: &Config,
    action: AccountsAction,
) -> Result<(), StartError> {
    use identity::{AccountKind, AccountStatus, DisplayName, Email, Password, RoleName};

    let refused =
        |what: &str, err: &dyn std::fmt::Display| StartError::Command(format!("{what}: {err}"));
    let email = |text: &str| Email::parse(text).map_err(|err| refused("--email", &err));
    let find = async |text: &str| -> Result<identity::Account, StartError> {
        let email = email(text)?;
        identity::find_account_by_email(fabric.connection(identity::SCHEMA)?, &email)
            .await
            .map_err(|err| refused("accounts", &err))?
            .ok_or_else(|| StartError::Command(format!("no account has the email {email}")))
    };
    let admin = |err: crate::accounts::AdminError| refused("accounts", &err);
    match action {
        AccountsAction::Create {
            email: address,
            roles,
            name,
            kind,
        } => {
            fabric.databases().migrate().await?;
            let email = email(&address)?;
            let display_name = DisplayName::parse(name.as_deref().unwrap_or(email.as_str()))
                .map_err(|err| refused("--name", &err))?;
            let kind = AccountKind::parse(&kind).map_err(|err| refused("--kind", &err))?;
            let roles = roles
                .iter()
                .map(|role| RoleName::parse(role).map_err(|err| refused("--role", &err)))
                .collect::<Result<Vec<_>, _>>()?;
            let password = read_password(&email)?;
            let password = Password::new(&password).map_err(|err| refused("the password", &err))?;
            let settings = config.settings()?;
            let opening = crate::accounts::Opening {
                email,
                display_name,
                kind,
                password,
                roles,
            };
            let account = crate::accounts::open(fabric, settings.login.password, opening)
                .await
                .map_err(admin)?;
            print_lines(&[account_line(fabric, &account).await?]);
        }
        AccountsAction::List => {
            let mut after = None;
            let mut lines = Vec::new();
            loop {
                let page =
                    identity::list_accounts(fabric.connection(identity::SCHEMA)?, after, 500)
                        .await
                        .map_err(|err| refused("accounts", &err))?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for account in &page {
                    lines.push(account_line(fabric, account).await?);
                }
            }
            if lines.is_empty() {
                lines.push("no accounts".to_owned());
            }
            print_lines(&lines);
        }
        AccountsAction::Suspend { email } => {
            let account = find(&email).await?;
            let account = crate::accounts::set_status(fabric, account.id, AccountStatus::Suspended)
                .await
                .map_err(admin)?;
            print_lines(&[account_line(fabric, &account).await?]);
        }
        AccountsAction::Reactivate { email } => {
            let account = find(&email).await?;
            let account = crate::accounts::set_status(fabric, account.id, AccountStatus::Active)
                .await
                .map_err(admin)?;
            print_lines(&[account_line(fabric, &account).await?]);
        }
        AccountsAction::Disable { email } => {
            let account = find(&email).await?;
            let account = crate::accounts::set_status(fabric, account.id, AccountStatus::Disabled)
                .await
                .map_err(admin)?;
            print_lines(&[account_line(fabric, &account).await?]);
        }
        AccountsAction::Grant { email, role } => {
            let account = find(&email).await?;
            let role = RoleName::parse(&role).map_err(|err| refused("the role", &err))?;
            crate::accounts::set_role(fabric, account.id, &role, true)
                .await
                .map_err(admin)?;
            print_lines(&[account_line(fabric, &account).await?]);
        }
        AccountsAction::Revoke { email, role } => {
            let account = find(&email).await?;
            let role = RoleName::parse(&role).map_err(|err| refused("the role", &err))?;
            crate::accounts::set_role(fabric, account.id, &role, false)
                .await
                .map_err(admin)?;
            print_lines(&[account_line(fabric, &account).await?]);
        }
    }
    Ok(())
}

/// One account on one line: id, email, kind, status, roles.
async fn account_line(
    fabric: &orchestration::Fabric,
    account: &identity::Account,
) -> Result<String, StartError> {
    let roles = identity::roles_of(fabric.connection(identity::SCHEMA)?, account.id)
        .await
        .map_err(|err| StartError::Command(err.to_string()))?;
    let roles: Vec<&str> = roles.iter().map(identity::RoleName::as_str).collect();
    Ok(format!(
        "{} {} {} {} roles: {}",
        account.id,
        account.email,
        account.kind.as_str(),
        account.status,
        if roles.is_empty() {
            "none".to_owned()
        } else {
            roles.join(", ")
        }
    ))
}

/// The new account's password: asked twice at a terminal (without echo), else one
/// line of standard input.
fn read_password(email: &identity::Email) -> Result<String, StartError> {
    use std::io::{BufRead, IsTerminal};
    let failed =
        |err: std::io::Error| StartError::Command(format!("cannot read the password: {err}"));
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("Password for {email}: ")).map_err(failed)?;
        let again = rpassword::prompt_password("Again: ").map_err(failed)?;
        if first != again {
            return Err(StartError::Command("the passwords differ".to_owned()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(failed)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn parse_state(text: &str) -> Result<RunState, String> {
    RunState::parse(text).ok_or_else(|| {
        let states: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown state `{text}`; one of {}", states.join(", "))
    })
}

/// One run on one line, as `runs list` prints it.
struct RunLine<'a>(&'a RunStatus);

impl std::fmt::Display for RunLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = self.0;
        write!(
            f,
            "{} {} {} step {} key {} started {}",
            run.id,
            run.saga,
            run.state,
            run.current_step,
            run.idempotency_key,
            run.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
        )?;
        if let Some(error) = &run.last_error {
            write!(f, "; last error: {error}")?;
        }
        Ok(())
    }
}

/// A run in full, as `runs show` prints it.
struct RunReport<'a>(&'a RunDetails);

impl std::fmt::Display for RunReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let RunDetails { run, input, steps } = self.0;
        writeln!(f, "run {} ({})", run.id, run.saga)?;
        writeln!(f, "  state:    {}", run.state)?;
        writeln!(f, "  key:      {}", run.idempotency_key)?;
        writeln!(f, "  input:    {input}")?;
        let time =
            |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
        write!(f, "  started:  {}", time(run.created_at))?;
        match run.finished_at {
            Some(at) => writeln!(
                f,
                ", finished {} ({})",
                time(at),
                Seconds((at - run.created_at).to_std().unwrap_or_default())
            )?,
            None => writeln!(f, ", updated {}", time(run.updated_at))?,
        }
        if run.state.is_active() {
            write!(
                f,
                "  at step {} (attempts {}), ",
                run.current_step, run.attempts
            )?;
            match &run.lease_holder {
                Some(holder) => {
                    writeln!(f, "held by {holder} until {}", time(run.lease_expires_at))?;
                }
                // Given up by a stopping instance: any instance's recovery takes it.
                None => writeln!(f, "held by nobody: waiting for an instance to resume it")?,
            }
        }
        if run.cancel_requested {
            writeln!(f, "  cancel requested")?;
        }
        if let Some(rejection) = &run.rejection {
            writeln!(f, "  refused:  {rejection}")?;
        }
        if let Some(error) = &run.last_error {
            writeln!(f, "  error:    {error}")?;
        }
        write!(f, "  steps:")?;
        if steps.is_empty() {
            write!(f, " none took effect")?;
        }
        for step in steps {
            write!(
                f,
                "\n    {}. {} {} after {} attempt(s)",
                step.position + 1,
                step.name,
                step.state,
                step.attempts
            )?;
            if let Some(done) = step.completed_at {
                write!(
                    f,
                    " in {}",
                    Seconds((done - step.started_at).to_std().unwrap_or_default())
                )?;
            }
            if let Some(undone) = step.compensated_at {
                write!(f, ", compensated {}", time(undone))?;
            }
            if let Some(output) = &step.output {
                write!(f, "\n       output: {output}")?;
            }
        }
        Ok(())
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    orchestration::clock::duration::parse(text)
}

/// One database's outbox, as `outbox status` prints it.
struct OutboxReport<'a>(&'a OutboxStatus);

impl std::fmt::Display for OutboxReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.0;
        write!(
            f,
            "{}: {} pending ({} in flight), {} dead",
            status.database, status.pending, status.in_flight, status.dead
        )?;
        match status.oldest_pending_age {
            Some(age) => write!(f, ", oldest pending for {}", Seconds(age))?,
            None => f.write_str(", nothing pending")?,
        }
        for subscriber in &status.subscribers {
            write!(
                f,
                "\n  {}: {} pending ({} in flight), {} dead",
                subscriber.subscriber, subscriber.pending, subscriber.in_flight, subscriber.dead
            )?;
            if let Some(error) = &subscriber.last_error {
                write!(f, "; last error: {error}")?;
            }
        }
        Ok(())
    }
}

/// A duration as a person reads it: `850ms`, `12.3s`, `4m 05s`, `2h 10m`.
struct Seconds(std::time::Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            0 => write!(f, "{}ms", self.0.as_millis()),
            1..60 => write!(f, "{:.1}s", self.0.as_secs_f64()),
            60..3600 => write!(f, "{}m {:02}s", secs / 60, secs % 60),
            _ => write!(f, "{}h {:02}m", secs / 3600, secs % 3600 / 60),
        }
    }
}

#[allow(clippy::print_stdout)] // The command's output is its report.
fn print_lines(items: &[impl std::fmt::Display]) {
    for item in items {
        println!("{item}");
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("switchyard: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(holder: Option<&str>) -> RunDetails {
        let at = chrono::DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();
        RunDetails {
            run: RunStatus {
                id: Uuid::nil(),
                saga: "place_order".to_owned(),
                idempotency_key: "k".to_owned(),
                state: RunState::Running,
                current_step: 2,
                attempts: 1,
                cancel_requested: false,
                lease_holder: holder.map(str::to_owned),
                lease_expires_at: at,
                last_error: None,
                rejection: None,
                created_at: at,
                updated_at: at,
                finished_at: None,
            },
            input: serde_json::json!({}),
            steps: Vec::new(),
        }
    }

    #[test]
    fn runs_show_says_who_holds_an_unfinished_run() {
        let held = RunReport(&running(Some("a:1"))).to_string();
        assert!(
            held.contains("at step 2 (attempts 1), held by a:1 until 2025-"),
            "{held}"
        );
        let handed_over = RunReport(&running(None)).to_string();
        assert!(
            handed_over.contains("held by nobody: waiting for an instance to resume it"),
            "{handed_over}"
        );
    }
}
