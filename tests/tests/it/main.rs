//! Cross-module tests: the HTTP API end to end, the kill tests (SQLite, two-phase
//! commit, the outbox) and the architecture rules.

mod architecture;
mod e2e;
mod kill;
mod outbox_kill;
mod two_phase_kill;
