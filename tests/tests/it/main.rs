//! Cross-module tests: the HTTP API end to end, the SQLite kill test, and the
//! architecture rules.

mod architecture;
mod e2e;
mod kill;
mod two_phase_kill;
