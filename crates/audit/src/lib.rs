//! The audit boundary: an append-only log of who did what to which subject, and when.
//!
//! Entries are only ever added ([`record`]) and read ([`entries_for`]); there is no
//! function to change or remove one, and none should be added: an audit log that can be
//! rewritten is not evidence.
//!
//! Every function takes the connection first (`&impl ConnectionTrait`), so the caller
//! decides the transaction; nothing here commits. Record an entry inside the unit of
//! work whose change it describes, and it commits (or not) with that change. Tables live
//! in schema [`SCHEMA`].

mod entities;
mod entries;
mod error;
mod types;

pub use entries::{Entry, MAX_DATA_BYTES, NewEntry, entries_for, record};
pub use error::{Error, Invalid, Result};
pub use types::{Action, Actor, Subject};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
