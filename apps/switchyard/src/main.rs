//! The `switchyard` binary: parse the command line, load config, run.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    switchyard::cli::Cli::parse().run()
}
