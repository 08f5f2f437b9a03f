//! The notifications boundary: notifications queued once per (cause, recipient,
//! template) and delivered through a [`Sender`] port, each attempt recorded, retried
//! until sent or dead. Rendering uses the templates under `templates/`.
//!
//! Every persistence function takes the connection first (`&impl ConnectionTrait`), so
//! the caller decides the transaction; nothing here commits. Tables live in schema
//! [`SCHEMA`]. Nothing here sends by itself: the delivery job (in `workflows`) claims
//! due notifications, renders, sends and records.

mod entities;
mod error;
mod notifications;
mod sender;
mod templates;

pub use error::{Error, Invalid, Result};
pub use notifications::{
    Attempt, AttemptRecord, NewNotification, Notification, Recipient, Status, attempts_of, claim,
    due, enqueue, for_recipient, get, record_attempt, with_status,
};
pub use sender::{FileSender, Message, SendError, SendFuture, Sender, SmtpSender};
pub use templates::{Rendered, TEMPLATES, render};

/// The boundary's name, which is also its schema: the crate's name (the architecture test
/// checks that `migrations` registers a boundary of this name).
pub const SCHEMA: &str = env!("CARGO_PKG_NAME");
