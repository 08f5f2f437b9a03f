//! Events: the transactional outbox and inbox.
//!
//! A unit of work emits an event with [`UnitOfWork::emit`](crate::UnitOfWork::emit).
//! At commit, one message per subscriber of its type is written into the `outbox`
//! schema of the database that holds the emitting boundary, in the same transaction
//! as the state change: the event exists if and only if the change committed. The
//! [`Dispatcher`] worker claims due messages, runs each subscriber's [`Handler`] in a
//! unit of work of its own, and marks them delivered, retried or dead.
//!
//! Delivery is at least once. A handler's first step on a database also records
//! `(subscriber, event id)` in that database's inbox, in the same transaction as the
//! handler's effect; a redelivered event finds the record and is skipped, so the
//! effect happens exactly once.

mod admin;
mod dispatcher;
mod routes;
mod schema;
mod store;

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::unit_of_work::UnitOfWork;

pub use admin::{OutboxStatus, ReplayFilter, SubscriberStatus};
pub(crate) use admin::{replay as admin_replay, status as admin_status};
pub use dispatcher::{Dispatcher, DispatcherOptions, InvalidOptions};
pub(crate) use routes::{Routes, Subscription};
pub use schema::OUTBOX_SCHEMA;
pub(crate) use schema::boundary;
pub(crate) use store::{NewMessage, complete, notify, record_in_inbox, write_messages};

/// The outbox message a delivery's unit of work marks done in its own transaction.
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    /// The fabric's index of the database holding the message.
    pub(crate) database: usize,
    pub(crate) message_id: String,
    /// The claimer, which must still hold the message.
    pub(crate) holder: String,
}

/// The name of an event type, tied to the Rust type of its payload.
///
/// Domain crates publish plain serde structs; the crate that composes them declares
/// the event type once, as a constant, and uses it to emit and to subscribe:
/// `pub const ORDER_PLACED: EventType<OrderPlaced> = EventType::new("orders.order_placed");`
pub struct EventType<T> {
    name: &'static str,
    _payload: PhantomData<fn() -> T>,
}

impl<T> EventType<T> {
    /// The event type called `name`. The name is stored with every message: keep it
    /// stable across releases.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _payload: PhantomData,
        }
    }

    /// The name.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for EventType<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for EventType<T> {}

impl<T> fmt::Debug for EventType<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventType({})", self.name)
    }
}

/// An event as delivered to a subscriber: its metadata and its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The event's id (a UUIDv7), the same for every subscriber.
    pub event_id: Uuid,
    /// The event type's name.
    pub event_type: String,
    /// Events of one key reach a subscriber in the order they were emitted.
    pub ordering_key: String,
    /// The boundary that emitted the event.
    pub source: String,
    /// When the emitting unit of work ran.
    pub occurred_at: DateTime<Utc>,
    /// The emitting unit of work's trace context, as a W3C `traceparent`: its trace id
    /// is the handler run's trace id, so the handler's span links to the emitter's.
    pub trace_parent: Option<String>,
    /// This delivery's attempt number, from 1.
    pub attempt: u32,
    /// The payload, as JSON.
    pub payload: String,
}

/// A subscriber's reaction to one event type.
///
/// The handler runs in a unit of work of its own, named after the subscriber. Its
/// first step on each database records the delivery in that database's inbox within
/// the same transaction, so a redelivered event is skipped once its effect has
/// committed. Work a handler does outside its unit of work (a call to another system)
/// is at least once: make it idempotent, for instance keyed by the event id.
pub trait Handler<T>: Send + Sync + 'static {
    /// Handles one delivery. An `Err` is retried with backoff, up to the dispatcher's
    /// attempt limit; then the message is dead until replayed.
    fn handle(
        &self,
        event: T,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Why a delivery failed: any error, and whether retrying can help.
pub struct HandlerError {
    source: Box<dyn std::error::Error + Send + Sync>,
    permanent: bool,
}

impl HandlerError {
    /// A failure that retrying cannot mend (the payload does not parse, say): the
    /// message is dead at once.
    pub fn permanent(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            permanent: true,
        }
    }

    /// A failure described by `message`, retried like any other.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            source: message.to_string().into(),
            permanent: false,
        }
    }

    /// Whether retrying cannot help.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(source: E) -> Self {
        Self {
            source: Box::new(source),
            permanent: false,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("source", &self.source)
            .field("permanent", &self.permanent)
            .finish()
    }
}

/// A W3C trace context: the trace a unit of work belongs to, and the run that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub(crate) trace_id: Uuid,
}

impl TraceContext {
    /// The `traceparent` a run of this trace hands to the events it emits: the trace
    /// id, and the run id's low 64 bits as the parent span id.
    pub(crate) fn traceparent(&self, run_id: Uuid) -> String {
        let span = run_id.as_u128() as u64;
        format!("00-{}-{span:016x}-01", self.trace_id.simple())
    }

    /// The trace of a `traceparent`, if it is well formed.
    pub(crate) fn parse(traceparent: &str) -> Option<Self> {
        let mut parts = traceparent.split('-');
        let (Some("00"), Some(trace_id), Some(span), Some(_flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if trace_id.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = Uuid::from_u128(u128::from_str_radix(trace_id, 16).ok()?);
        Some(Self { trace_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_carries_the_trace_id_and_the_emitting_run() {
        let trace = TraceContext {
            trace_id: Uuid::now_v7(),
        };
        let run = Uuid::now_v7();
        let header = trace.traceparent(run);
        assert_eq!(header.len(), 55, "{header}");
        assert!(header.ends_with(&format!("{:016x}-01", run.as_u128() as u64)));
        assert_eq!(TraceContext::parse(&header), Some(trace));
        for bad in ["", "00-abc-def-01", "01-x", &header.replace("00-", "00-zz")] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }
}
