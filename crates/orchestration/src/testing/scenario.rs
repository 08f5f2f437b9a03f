//! Scenarios: stimulate the system, then wait for an event or a state, with a timeout
//! and a failure that shows what happened instead. Spring Modulith's `Scenario`, over
//! this fabric's outboxes.
//!
//! ```ignore
//! let (placement, placed) = Scenario::new(db.fabric())
//!     .stimulate(async || workflow.place(command).await)
//!     .await
//!     .and_wait_for_event(ORDER_PLACED, |event| event.lines.len() == 2)
//!     .await;
//! ```
//!
//! An event is seen once it is in an outbox: when its unit of work commits, for every
//! event type with at least one subscriber (an event nobody subscribes to is not
//! stored). Waiting polls every 20 ms in real time, so it works with tokio's clock
//! paused too.

use std::fmt::{self, Debug};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::fabric::Fabric;
use crate::outbox::{Envelope, EventType, OutboxStatus, store};

/// How long a scenario waits unless told otherwise: long enough for a loaded 2-core CI
/// machine; a scenario that passes returns as soon as it can.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);

/// A scenario on a fabric, before its stimulus.
#[derive(Debug, Clone)]
pub struct Scenario<'f> {
    fabric: &'f Fabric,
    timeout: Duration,
}

/// Where each database's outbox stood when the stimulus began.
#[derive(Debug, Clone)]
struct Watermarks(Vec<Option<String>>);

impl<'f> Scenario<'f> {
    /// A scenario on `fabric`, waiting at most [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn new(fabric: &'f Fabric) -> Self {
        Self {
            fabric,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Waits at most `timeout` for what follows the stimulus.
    #[must_use]
    pub fn within(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `stimulus` (a function call, a unit of work, an HTTP call…) and keeps what it
    /// returns. Events are watched from just before it runs.
    ///
    /// # Panics
    /// When an outbox cannot be read.
    pub async fn stimulate<T>(self, stimulus: impl AsyncFnOnce() -> T) -> Stimulated<'f, T> {
        let watermarks = Some(self.watermarks().await);
        let value = stimulus().await;
        Stimulated {
            scenario: self,
            watermarks,
            value,
        }
    }

    /// Waits, without a stimulus, until `probe` returns a state that `done` accepts;
    /// returns that state. No outbox is read (so a test that pauses tokio's clock can
    /// wait for state outside the databases).
    ///
    /// # Panics
    /// When no such state comes within the timeout: the message names `what` and shows
    /// the last state seen.
    pub async fn wait_for_state<S: Debug>(
        self,
        what: &str,
        probe: impl AsyncFn(&Fabric) -> S,
        done: impl Fn(&S) -> bool,
    ) -> S {
        let unstimulated = Stimulated {
            scenario: self,
            watermarks: None,
            value: (),
        };
        unstimulated.and_wait_for_state(what, probe, done).await.1
    }

    /// Waits, without a stimulus, until every outbox has delivered everything.
    ///
    /// # Panics
    /// When something is still undelivered at the timeout.
    pub async fn wait_until_delivered(self) {
        self.wait_for_state("delivered everything", outbox_status, |s| {
            nothing_pending(s)
        })
        .await;
    }

    async fn watermarks(&self) -> Watermarks {
        let databases = self.fabric.databases();
        let mut marks = Vec::with_capacity(databases.database_count());
        for index in 0..databases.database_count() {
            let (id, connection) = databases.database(index);
            let newest = store::newest_id(connection)
                .await
                .unwrap_or_else(|e| panic!("scenario: read the outbox of {id}: {e}"));
            marks.push(newest);
        }
        Watermarks(marks)
    }
}

/// A scenario after its stimulus: wait for what it should cause.
#[derive(Debug)]
pub struct Stimulated<'f, T> {
    scenario: Scenario<'f>,
    /// Where the outboxes stood before the stimulus; `None` without one.
    watermarks: Option<Watermarks>,
    value: T,
}

/// The events a scenario saw, one line each, for its failure message.
struct Seen<'a>(&'a [(Envelope, String)]);

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("  (none)");
        }
        for (event, status) in self.0 {
            writeln!(
                f,
                "  {} key={} from {} ({status}): {}",
                event.event_type, event.ordering_key, event.source, event.payload
            )?;
        }
        Ok(())
    }
}

impl<'f, T> Stimulated<'f, T> {
    /// What the stimulus returned.
    #[must_use]
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The events emitted since the stimulus began, once each (an event is stored once
    /// per subscriber), in the order written, with the status of one of its messages.
    ///
    /// # Panics
    /// When an outbox cannot be read.
    pub async fn events(&self) -> Vec<(Envelope, String)> {
        let databases = self.scenario.fabric.databases();
        let mut seen: Vec<(Envelope, String)> = Vec::new();
        let Some(watermarks) = &self.watermarks else {
            return seen;
        };
        for (index, after) in watermarks.0.iter().enumerate() {
            let (id, connection) = databases.database(index);
            let messages = store::messages_after(connection, after.as_deref())
                .await
                .unwrap_or_else(|e| panic!("scenario: read the outbox of {id}: {e}"));
            for (envelope, status) in messages {
                if !seen.iter().any(|(e, _)| e.event_id == envelope.event_id) {
                    seen.push((envelope, status));
                }
            }
        }
        seen
    }

    /// Waits until an event of `event_type` for which `matches` holds has been emitted
    /// since the stimulus began; returns the stimulus's value and the event.
    ///
    /// # Panics
    /// When no such event comes within the timeout: the message lists every event seen.
    pub async fn and_wait_for_event<E: DeserializeOwned>(
        self,
        event_type: EventType<E>,
        matches: impl Fn(&E) -> bool,
    ) -> (T, E) {
        let deadline = Instant::now() + self.scenario.timeout;
        loop {
            let seen = self.events().await;
            let found = seen
                .iter()
                .filter(|(event, _)| event.event_type == event_type.name())
                .filter_map(|(event, _)| serde_json::from_str::<E>(&event.payload).ok())
                .find(|event| matches(event));
            if let Some(event) = found {
                return (self.value, event);
            }
            assert!(
                Instant::now() < deadline,
                "scenario: no matching `{}` event within {:?}; the events since the \
                 stimulus:\n{}",
                event_type.name(),
                self.scenario.timeout,
                Seen(&seen)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `probe` returns a state that `done` accepts; returns the stimulus's
    /// value and that state.
    ///
    /// # Panics
    /// When no such state comes within the timeout: the message names `what` and shows
    /// the last state seen and the events since the stimulus.
    pub async fn and_wait_for_state<S: Debug>(
        self,
        what: &str,
        probe: impl AsyncFn(&Fabric) -> S,
        done: impl Fn(&S) -> bool,
    ) -> (T, S) {
        let deadline = Instant::now() + self.scenario.timeout;
        loop {
            let state = probe(self.scenario.fabric).await;
            if done(&state) {
                return (self.value, state);
            }
            if Instant::now() >= deadline {
                let events = match self.watermarks {
                    None => String::new(),
                    Some(_) => format!(
                        "\nthe events since the stimulus:\n{}",
                        Seen(&self.events().await)
                    ),
                };
                panic!(
                    "scenario: never {what} within {:?}; the last state:\n  {state:?}{events}",
                    self.scenario.timeout,
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every outbox has delivered everything (nothing pending, in flight or
    /// waiting for a retry; dead messages stay dead); returns the stimulus's value.
    ///
    /// # Panics
    /// When something is still undelivered at the timeout: the message shows each
    /// outbox's status.
    pub async fn and_wait_until_delivered(self) -> T {
        self.and_wait_for_state("delivered everything", outbox_status, |s| {
            nothing_pending(s)
        })
        .await
        .0
    }
}

async fn outbox_status(fabric: &Fabric) -> Vec<OutboxStatus> {
    fabric
        .events()
        .status()
        .await
        .unwrap_or_else(|e| panic!("scenario: read the outbox status: {e}"))
}

fn nothing_pending(statuses: &[OutboxStatus]) -> bool {
    statuses.iter().all(|s| s.pending == 0)
}
