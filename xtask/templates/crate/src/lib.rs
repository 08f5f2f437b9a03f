//! The {{name}} boundary. Created by `cargo xtask new-module {{name}}`: replace the
//! example `items` with the module's own tables and functions.
//!
//! Every function takes the connection first (`&impl ConnectionTrait`), so the caller
//! decides the transaction; nothing here commits. Call the functions that write inside
//! a unit-of-work step, and they commit (or not) with the rest of the unit. Tables live
//! in schema [`SCHEMA`].

mod entities;
mod error;
mod events;
mod items;

pub use error::{Error, Invalid, Result};
pub use events::ItemAdded;
pub use items::{Item, ItemName, add_item, get_item, list_items};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
