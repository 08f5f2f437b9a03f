//! Events: the transactional outbox and inbox.
//!
//! The outbox's tables and what units of work need of them; the worker that drains
//! them is [`crate::dispatch`].
//!
//! A unit of work emits an event with [`UnitOfWork::emit`](crate::UnitOfWork::emit).
//! At commit, one message per subscriber of its type is written into the `outbox`
//! schema of the database that holds the emitting boundary, in the same transaction
//! as the state change: the event exists if and only if the change committed. The
//! [`Dispatcher`](crate::dispatch::Dispatcher) worker claims due messages, runs each subscriber's [`Handler`](crate::dispatch::Handler) in a
//! unit of work of its own, and marks them delivered, retried or dead.
//!
//! Delivery is at least once. A handler's first step on a database also records
//! `(subscriber, event id)` in that database's inbox, in the same transaction as the
//! handler's effect; a redelivered event finds the record and is skipped, so the
//! effect happens exactly once.

mod admin;
mod delivery;
pub(crate) mod store;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

pub use crate::schema::outbox::OUTBOX_SCHEMA;
pub use admin::{OutboxStatus, ReplayFilter, SubscriberStatus};
pub(crate) use admin::{replay, status};
pub(crate) use delivery::Delivery;
pub(crate) use store::{NewMessage, notify, write_messages};

/// The outbox of every database, as the units of work of one process see it: which
/// subscribers receive each event type, and the wake-up of each database's
/// dispatchers. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The subscribers of each event type, in registration order.
    subscribers: RwLock<HashMap<&'static str, Vec<&'static str>>>,
    /// Per database: woken when a unit of work of this process commits messages to
    /// its outbox.
    wake: Vec<Arc<Notify>>,
}

impl Outbox {
    /// The outbox of `databases` databases, with no subscriber yet.
    pub(crate) fn new(databases: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                subscribers: RwLock::default(),
                wake: (0..databases).map(|_| Arc::default()).collect(),
            }),
        }
    }

    /// Makes `subscriber` receive the events of `event_type` emitted from now on.
    pub(crate) fn subscribe(&self, event_type: &'static str, subscriber: &'static str) {
        self.inner
            .subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(event_type)
            .or_default()
            .push(subscriber);
    }

    /// The subscribers of `event_type`.
    pub(crate) fn subscribers_of(&self, event_type: &str) -> Vec<&'static str> {
        self.inner
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(event_type)
            .cloned()
            .unwrap_or_default()
    }

    /// The wake-up of database `database`'s dispatchers in this process.
    pub(crate) fn wake(&self, database: usize) -> &Arc<Notify> {
        &self.inner.wake[database]
    }
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
