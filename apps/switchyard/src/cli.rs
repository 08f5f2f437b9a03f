//! The command line: `serve` (the default), `migrate status|up|plan` and
//! `outbox status|replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orchestration::{OutboxStatus, ReplayFilter};

use crate::application::{self, Application, ServeOptions, StartError};
use crate::config::{Config, ConfigDuration};
use crate::telemetry;

/// Switchyard: a modular monolith serving the inventory and orders API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file, read if it exists; `SWITCHYARD_*` variables override it.
    #[arg(
        long,
        global = true,
        default_value = "switchyard.toml",
        env = "SWITCHYARD_CONFIG"
    )]
    config: PathBuf,
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
        older_than: Option<ConfigDuration>,
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
        let config = Config::load(&self.config)?;
        telemetry::init(&config.log.filter);
        match self.command.unwrap_or(Command::Serve { no_migrate: false }) {
            Command::Serve { no_migrate } => {
                let options = ServeOptions {
                    migrate: !no_migrate,
                };
                let app = Application::build(&config, options).await?;
                tracing::info!(addr = %app.local_addr(), "serving");
                app.run_until_stopped().await
            }
            Command::Migrate { action } => {
                let fabric = application::connect(&config).await?;
                match action {
                    MigrateAction::Status => print_lines(&fabric.migration_status().await?),
                    MigrateAction::Up => print_lines(&fabric.migrate().await?),
                    MigrateAction::Plan => print_lines(&fabric.migration_plan().await?),
                }
                fabric.close().await;
                Ok(())
            }
            Command::Outbox { action } => {
                let fabric = application::connect(&config).await?;
                let result = match action {
                    OutboxAction::Status => fabric.outbox_status().await.map(|statuses| {
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
                            older_than: older_than.map(|d| d.0),
                        };
                        fabric.outbox_replay(&filter).await.map(|replayed| {
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
        }
    }
}

fn parse_duration(text: &str) -> Result<ConfigDuration, String> {
    ConfigDuration::parse(text)
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
