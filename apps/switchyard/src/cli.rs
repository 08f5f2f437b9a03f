//! The command line: `serve` (the default) and `migrate status|up|plan`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::application::{self, Application, ServeOptions, StartError};
use crate::config::Config;
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
