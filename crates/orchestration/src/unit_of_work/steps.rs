//! The unit of work a run's closure receives: its steps (ORM closures, SQL, batches),
//! the events it emits, and the transactions it opens as steps touch databases.

use std::fmt;
use std::marker::PhantomData;
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement, Value};
use tracing::{Instrument, field};
use uuid::Uuid;

use super::Pipelines;
use super::summary::{StepSummary, elapsed_ms};
use crate::batch::{Batch, BatchOptions, BatchProgress};
use crate::databases::{CommitPlan, Databases};
use crate::error::UnitOfWorkError;
use crate::outbox::{Delivery, EventType, NewMessage, TraceContext};
use crate::two_phase::OpenTransaction;

/// A unit of work in progress: the handle the work's closure receives.
///
/// Each step runs in the transaction of its boundary's database, begun by the first
/// step that touches that database. Boundaries on one database share one transaction;
/// boundaries on several PostgreSQL databases commit by two-phase commit; any other
/// mix is refused before the step runs. `E` is the work's error type; each
/// step's own error converts into it.
pub struct UnitOfWork<E> {
    pub(super) pipelines: Pipelines,
    pub(super) pipeline: &'static str,
    /// One transaction per database touched so far, in the order first touched.
    pub(super) open: Vec<OpenTransaction>,
    /// Every boundary touched so far with its database index, in the order first touched.
    pub(super) touched: Vec<(&'static str, usize)>,
    /// How `touched` commits; recomputed only when a step touches a new boundary.
    pub(super) plan: CommitPlan,
    pub(super) steps: Vec<StepSummary>,
    /// The trace this run belongs to: its own run id, unless it delivers an event.
    pub(super) trace: TraceContext,
    pub(super) run_id: Uuid,
    /// Set when the run delivers an event to a subscriber.
    pub(super) delivery: Option<Delivery>,
    /// Events emitted so far, with the index of the database whose outbox takes them.
    pub(super) outgoing: Vec<(usize, NewMessage)>,
    pub(super) events: usize,
    pub(super) _error: PhantomData<fn() -> E>,
}

impl<E> fmt::Debug for UnitOfWork<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("pipeline", &self.pipeline)
            .field("plan", &self.plan)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl<E: From<UnitOfWorkError>> UnitOfWork<E> {
    /// Runs one step against `boundary` inside the unit of work's transaction: an ORM
    /// closure given the boundary's transaction.
    ///
    /// # Errors
    /// The step's own error, converted into `E`; or a [`UnitOfWorkError`] if `boundary`
    /// is unknown, cannot commit together with the boundaries before it, or the
    /// transaction could not begin.
    pub async fn step<T, S, F>(&mut self, boundary: &str, step: &'static str, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&DatabaseTransaction) -> Result<T, S>,
        E: From<S>,
    {
        self.run_step(boundary, step, async move |tx| {
            f(tx).await.map(|value| (value, None))
        })
        .await
    }

    /// Runs one parameterised SQL statement against `boundary` and returns the rows it
    /// affected. The SQL is a `&'static str`, so it cannot be assembled from input;
    /// values travel as parameters, in the placeholder style of the boundary's engine
    /// (`$1` on PostgreSQL and SQLite, `?` on MySQL and SQLite).
    ///
    /// # Errors
    /// The database's error, or a [`UnitOfWorkError`] as for [`UnitOfWork::step`].
    pub async fn execute(
        &mut self,
        boundary: &str,
        step: &'static str,
        sql: &'static str,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<u64, E>
    where
        E: From<DbErr>,
    {
        let values: Vec<Value> = values.into_iter().collect();
        self.run_step(boundary, step, async move |tx| {
            let statement = Statement::from_sql_and_values(tx.get_database_backend(), sql, values);
            let rows = tx.execute_raw(statement).await?.rows_affected();
            Ok::<_, DbErr>((rows, Some(rows)))
        })
        .await
    }

    /// Inserts (or upserts) `batch` into a table of `boundary`, in chunks of
    /// `options.chunk_size` rows, calling `progress` after each chunk. All chunks are
    /// part of this unit of work's transaction; for an import too large for one
    /// transaction, see [`Import`](crate::batch::Import).
    ///
    /// # Errors
    /// A row whose length differs from the columns', the database's error, or a
    /// [`UnitOfWorkError`] as for [`UnitOfWork::step`].
    pub async fn insert_rows(
        &mut self,
        boundary: &str,
        step: &'static str,
        batch: &Batch,
        options: &BatchOptions,
        mut progress: impl FnMut(BatchProgress) + Send,
    ) -> Result<u64, E>
    where
        E: From<DbErr>,
    {
        let schema = self
            .databases()
            .boundary(boundary)
            .map(|(b, _)| b.name())
            .ok_or_else(|| UnitOfWorkError::UnknownBoundary {
                boundary: boundary.to_owned(),
            })?;
        self.run_step(boundary, step, async move |tx| {
            let rows = crate::batch::insert(tx, schema, batch, options, &mut progress).await?;
            Ok::<_, DbErr>((rows, Some(rows)))
        })
        .await
    }

    /// Emits `event` of `event_type` from `boundary`: at commit, one message per
    /// subscriber of the type is written to the outbox of the database holding
    /// `boundary`, in the same transaction as the run's state changes. If the run rolls
    /// back, no subscriber ever sees the event. Events of one `ordering_key` reach each
    /// subscriber in the order they were emitted.
    ///
    /// # Errors
    /// The event does not serialise to JSON, or a [`UnitOfWorkError`] as for
    /// [`UnitOfWork::step`] (emitting touches `boundary`).
    pub fn emit<T: serde::Serialize>(
        &mut self,
        boundary: &str,
        event_type: EventType<T>,
        ordering_key: impl Into<String>,
        event: &T,
    ) -> Result<(), E> {
        let (source, database) = self.touch(boundary)?;
        let payload =
            serde_json::to_string(event).map_err(|source| UnitOfWorkError::Serialize {
                event_type: event_type.name(),
                source,
            })?;
        let subscribers = self.pipelines.outbox.subscribers_of(event_type.name());
        self.events += 1;
        if subscribers.is_empty() {
            tracing::debug!(
                event_type = event_type.name(),
                "no subscriber for the event; nothing to write"
            );
            return Ok(());
        }
        let message = NewMessage {
            event_id: Uuid::now_v7(),
            event_type: event_type.name(),
            subscriber: "",
            ordering_key: ordering_key.into(),
            source,
            payload,
            trace_parent: self.trace.traceparent(self.run_id),
            occurred_at: self.databases().clock().now(),
        };
        for subscriber in subscribers {
            let message = NewMessage {
                subscriber,
                ..message.clone()
            };
            self.outgoing.push((database, message));
        }
        Ok(())
    }

    /// Writes the emitted events into the outbox of each database, in its transaction.
    pub(super) async fn write_outbox(&mut self) -> Result<(), E> {
        let mut outgoing = std::mem::take(&mut self.outgoing);
        // Stable: each database's messages keep their emission order.
        outgoing.sort_by_key(|(database, _)| *database);
        // A transaction to be prepared cannot NOTIFY; two-phase runs notify after the
        // commit (see `notify_after_commit`).
        let notify = !self.two_phase();
        for batch in outgoing.chunk_by(|(a, _), (b, _)| a == b) {
            let database = batch[0].0;
            let messages: Vec<NewMessage> = batch.iter().map(|(_, m)| m.clone()).collect();
            let transaction = self.transaction_on(database).await?;
            crate::outbox::write_messages(transaction, &messages, notify)
                .await
                .map_err(|source| UnitOfWorkError::Outbox {
                    database: self.databases().database(database).0.clone(),
                    source,
                })?;
        }
        self.outgoing = outgoing;
        Ok(())
    }

    /// For a delivery: marks the message done in this run's transaction on its
    /// database, if the run has one there.
    pub(super) async fn complete_in_transaction(&mut self) -> Result<(), E> {
        let Some(delivery) = self.delivery.as_mut() else {
            return Ok(());
        };
        let open = self.open.iter().map(|o| (o.database, &o.transaction));
        delivery
            .complete_in(open)
            .await
            .map_err(|source| UnitOfWorkError::Outbox {
                database: self
                    .pipelines
                    .databases
                    .database(delivery.database())
                    .0
                    .clone(),
                source,
            })?;
        Ok(())
    }

    pub(super) fn databases(&self) -> &Databases {
        &self.pipelines.databases
    }

    fn two_phase(&self) -> bool {
        matches!(self.plan, CommitPlan::TwoPhase { .. })
    }

    /// After a committed run that wrote messages: wakes this process's dispatchers of
    /// each database and, after a two-phase commit, notifies the listening ones
    /// (a local transaction notified as it committed).
    pub(super) async fn wake_dispatchers(&self) {
        // `write_outbox` left the messages sorted by database.
        let mut databases: Vec<usize> = self.outgoing.iter().map(|(db, _)| *db).collect();
        databases.dedup();
        for database in databases {
            self.pipelines.outbox.wake(database).notify_one();
            if self.two_phase() {
                let (id, connection) = self.databases().database(database);
                if let Err(err) = crate::outbox::notify(connection).await {
                    // The dispatchers' polling delivers the messages regardless.
                    tracing::warn!(database = %id, error = %err, "cannot notify outbox dispatchers");
                }
            }
        }
    }

    /// Adds `boundary` to the touched boundaries, refusing it if it cannot commit
    /// together with those before it; returns its name and database index.
    fn touch(&mut self, boundary: &str) -> Result<(&'static str, usize), UnitOfWorkError> {
        let (boundary, database) = self.databases().boundary(boundary).ok_or_else(|| {
            UnitOfWorkError::UnknownBoundary {
                boundary: boundary.to_owned(),
            }
        })?;
        let boundary = boundary.name();
        if !self.touched.iter().any(|(b, _)| *b == boundary) {
            // Refuse before running anything that could not commit atomically; the
            // refused boundary is not recorded, so the summary shows what did run.
            let mut touched = self.touched.clone();
            touched.push((boundary, database));
            self.plan = self.databases().plan_for(&touched)?;
            self.touched = touched;
        }
        Ok((boundary, database))
    }

    async fn run_step<T, S, F>(&mut self, boundary: &str, step: &'static str, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&DatabaseTransaction) -> Result<(T, Option<u64>), S>,
        E: From<S>,
    {
        let (boundary, database) = self.touch(boundary)?;
        let span = tracing::info_span!(
            "step",
            pipeline = self.pipeline,
            step,
            boundary,
            database = %self.databases().database(database).0,
            rows = field::Empty,
            elapsed_ms = field::Empty,
        );
        let transaction = self.transaction_on(database).await?;
        let started = Instant::now();
        let result = f(transaction).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        span.record("elapsed_ms", elapsed_ms(elapsed));
        let rows = result.as_ref().ok().and_then(|(_, rows)| *rows);
        if let Some(rows) = rows {
            span.record("rows", rows);
        }
        self.steps.push(StepSummary {
            name: step,
            boundary,
            elapsed,
            succeeded: result.is_ok(),
            rows,
        });
        result.map(|(value, _)| value).map_err(E::from)
    }

    async fn transaction_on(&mut self, database: usize) -> Result<&DatabaseTransaction, E> {
        let position = match self.open.iter().position(|o| o.database == database) {
            Some(position) => position,
            None => {
                let (id, connection) = self.pipelines.databases.database(database);
                let transaction = crate::sql::begin_write(connection)
                    .await
                    .map_err(|source| UnitOfWorkError::Begin {
                        database: id.clone(),
                        source,
                    })?;
                self.open.push(OpenTransaction {
                    database,
                    transaction,
                });
                let transaction = &self.open[self.open.len() - 1].transaction;
                if let Some(delivery) = self.delivery.as_mut() {
                    let first = delivery
                        .record_in_inbox(transaction)
                        .await
                        .map_err(|source| UnitOfWorkError::Outbox {
                            database: id.clone(),
                            source,
                        })?;
                    if !first {
                        return Err(UnitOfWorkError::AlreadyHandled {
                            subscriber: delivery.subscriber,
                            event_id: delivery.event_id,
                        }
                        .into());
                    }
                }
                self.open.len() - 1
            }
        };
        Ok(&self.open[position].transaction)
    }
}
