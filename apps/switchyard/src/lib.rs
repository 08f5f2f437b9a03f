//! The Switchyard app: configuration, command line, HTTP adapters and the composition
//! of boundaries and workflows into one service.

mod accounts;
mod application;
pub mod cli;
pub mod config;
mod http;
pub mod import;
mod telemetry;

pub use application::{Application, ServeOptions, ShutdownSignal, StartError};
pub use config::Config;
