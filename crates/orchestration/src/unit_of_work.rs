//! Units of work: a named pipeline of steps, each naming the boundary it touches, that
//! commit together (one local transaction, or two-phase commit across PostgreSQL
//! databases), and the `RunSummary` that describes a run.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement, Value};
use tracing::{Instrument, field};
use uuid::Uuid;

use crate::batch::{Batch, BatchOptions, BatchProgress};
use crate::databases::{CommitPlan, Databases};
use crate::error::UnitOfWorkError;
use crate::outbox::{Delivery, EventType, NewMessage, Outbox, TraceContext};
use crate::two_phase::OpenTransaction;

/// What units of work run on: the databases, and the outbox they write emitted events
/// to. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Pipelines {
    databases: Databases,
    outbox: Outbox,
}

impl Pipelines {
    pub(crate) fn new(databases: Databases) -> Self {
        let outbox = Outbox::new(databases.database_count());
        Self { databases, outbox }
    }

    /// A unit of work named `name` (the name used in spans, summaries and metrics).
    pub(crate) fn pipeline(&self, name: &'static str) -> Pipeline<'_> {
        Pipeline {
            pipelines: self,
            name,
        }
    }

    pub(crate) fn databases(&self) -> &Databases {
        &self.databases
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// A named unit of work (a pipeline of steps), ready to run. Made by
/// [`Fabric::unit_of_work`](crate::Fabric::unit_of_work).
#[derive(Debug)]
pub struct Pipeline<'p> {
    pipelines: &'p Pipelines,
    name: &'static str,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step succeeded and the transaction committed.
    Committed,
    /// The work returned an error; nothing was persisted.
    RolledBack {
        /// The error, as text.
        reason: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Committed => f.write_str("committed"),
            Self::RolledBack { reason } => write!(f, "rolled back: {reason}"),
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// The step's name.
    pub name: &'static str,
    /// The boundary it touched.
    pub boundary: &'static str,
    /// How long it ran.
    pub elapsed: Duration,
    /// Whether it returned `Ok`.
    pub succeeded: bool,
    /// Rows the step affected, where the fabric can know (SQL and batch steps).
    pub rows: Option<u64>,
}

/// What happened in one run of a unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The pipeline's name.
    pub pipeline: &'static str,
    /// This run's id (a UUIDv7, so ids sort by start time).
    pub run_id: Uuid,
    /// Steps in the order they ran.
    pub steps: Vec<StepSummary>,
    /// How the run committed (or would have).
    pub plan: CommitPlan,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time from start to commit or rollback.
    pub elapsed: Duration,
    /// Events emitted (written to the outbox if the run committed).
    pub events: usize,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {:.1?} ({}):",
            self.pipeline, self.outcome, self.elapsed, self.plan
        )?;
        if self.events > 0 {
            write!(f, " {} events;", self.events)?;
        }
        for step in &self.steps {
            let mark = if step.succeeded { "" } else { " FAILED" };
            write!(f, " {}.{} {:.1?}", step.boundary, step.name, step.elapsed)?;
            if let Some(rows) = step.rows {
                write!(f, " {rows} rows")?;
            }
            write!(f, "{mark};")?;
        }
        Ok(())
    }
}

/// The value of a committed run and its summary.
#[derive(Debug)]
pub struct Completed<T> {
    /// What the work returned.
    pub value: T,
    /// What happened.
    pub summary: RunSummary,
}

/// A unit of work in progress: the handle the work's closure receives.
///
/// Each step runs in the transaction of its boundary's database, begun by the first
/// step that touches that database. Boundaries on one database share one transaction;
/// boundaries on several PostgreSQL databases commit by two-phase commit; any other
/// mix is refused before the step runs. `E` is the work's error type; each
/// step's own error converts into it.
pub struct UnitOfWork<E> {
    pipelines: Pipelines,
    pipeline: &'static str,
    /// One transaction per database touched so far, in the order first touched.
    open: Vec<OpenTransaction>,
    /// Every boundary touched so far with its database index, in the order first touched.
    touched: Vec<(&'static str, usize)>,
    /// How `touched` commits; recomputed only when a step touches a new boundary.
    plan: CommitPlan,
    steps: Vec<StepSummary>,
    /// The trace this run belongs to: its own run id, unless it delivers an event.
    trace: TraceContext,
    run_id: Uuid,
    /// Set when the run delivers an event to a subscriber.
    delivery: Option<Delivery>,
    /// Events emitted so far, with the index of the database whose outbox takes them.
    outgoing: Vec<(usize, NewMessage)>,
    events: usize,
    _error: PhantomData<fn() -> E>,
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

impl Pipeline<'_> {
    /// Runs `work` as one unit of work: commits if it returns `Ok`, rolls back if it
    /// returns `Err`.
    ///
    /// # Errors
    /// The error `work` returned, or a [`UnitOfWorkError`] (converted into `E`) if the
    /// transaction could not begin or commit, or if a step touched a boundary that
    /// cannot commit together with those before it.
    pub async fn run<T, E, F>(self, work: F) -> Result<Completed<T>, E>
    where
        F: AsyncFnOnce(&mut UnitOfWork<E>) -> Result<T, E>,
        E: From<UnitOfWorkError> + fmt::Display,
    {
        self.run_with(None, work).await.0
    }

    /// Runs `work` like [`Pipeline::run`] as the delivery `delivery`: the run joins
    /// the emitter's trace, records the delivery in the inbox of each database it
    /// touches, and marks the message done if it has a transaction on its database.
    /// Returns the delivery as the run left it (already handled, completed).
    pub(crate) async fn run_delivery<T, E, F>(
        self,
        delivery: Delivery,
        work: F,
    ) -> (Result<Completed<T>, E>, Delivery)
    where
        F: AsyncFnOnce(&mut UnitOfWork<E>) -> Result<T, E>,
        E: From<UnitOfWorkError> + fmt::Display,
    {
        let (result, delivery) = self.run_with(Some(delivery), work).await;
        (
            result,
            delivery.expect("a delivery's run keeps its delivery"),
        )
    }

    async fn run_with<T, E, F>(
        self,
        delivery: Option<Delivery>,
        work: F,
    ) -> (Result<Completed<T>, E>, Option<Delivery>)
    where
        F: AsyncFnOnce(&mut UnitOfWork<E>) -> Result<T, E>,
        E: From<UnitOfWorkError> + fmt::Display,
    {
        let run_id = Uuid::now_v7();
        let trace = delivery
            .as_ref()
            .and_then(|d| d.trace)
            .unwrap_or(TraceContext { trace_id: run_id });
        let span = tracing::info_span!(
            "unit_of_work",
            pipeline = self.name,
            run_id = %run_id,
            trace_id = %trace.trace_id.simple(),
            plan = field::Empty,
            outcome = field::Empty,
            elapsed_ms = field::Empty,
        );
        let started = Instant::now();
        // The unit of work owns a handle to the databases rather than borrowing them: a
        // borrowed lifetime in the closure's argument type defeats the compiler's proof
        // that the run's future is `Send`.
        let mut uow = UnitOfWork {
            pipelines: self.pipelines.clone(),
            pipeline: self.name,
            open: Vec::new(),
            touched: Vec::new(),
            plan: CommitPlan::Nothing,
            steps: Vec::new(),
            trace,
            run_id,
            delivery,
            outgoing: Vec::new(),
            events: 0,
            _error: PhantomData,
        };
        let result = async {
            let value = work(&mut uow).await?;
            if let Some(delivery) = uow.delivery.as_ref().filter(|d| d.already_handled) {
                // The work went on after its inbox check failed: roll it all back.
                return Err(UnitOfWorkError::AlreadyHandled {
                    subscriber: delivery.subscriber,
                    event_id: delivery.event_id,
                }
                .into());
            }
            uow.write_outbox().await?;
            uow.complete_in_transaction().await?;
            let mut open = std::mem::take(&mut uow.open);
            match open.len() {
                0 => {}
                1 => {
                    let only = open.remove(0);
                    only.transaction
                        .commit()
                        .await
                        .map_err(|source| UnitOfWorkError::Commit {
                            database: uow.databases().database(only.database).0.clone(),
                            source,
                        })?;
                }
                _ => crate::two_phase::commit(uow.databases(), run_id, open).await?,
            }
            Ok::<T, E>(value)
        }
        .instrument(span.clone())
        .await;
        for open in std::mem::take(&mut uow.open) {
            // The work failed; roll back now rather than leave it to the pool.
            if let Err(err) = open.transaction.rollback().await {
                tracing::warn!(parent: &span, error = %err, "rollback failed");
            }
        }
        if result.is_ok() && !uow.outgoing.is_empty() {
            crate::fault::point("outbox.committed");
            uow.wake_dispatchers().instrument(span.clone()).await;
        }
        let outcome = match &result {
            Ok(_) => Outcome::Committed,
            Err(err) => Outcome::RolledBack {
                reason: err.to_string(),
            },
        };
        let summary = RunSummary {
            pipeline: self.name,
            run_id,
            steps: uow.steps,
            plan: uow.plan,
            outcome,
            elapsed: started.elapsed(),
            events: uow.events,
        };
        span.record("plan", field::display(&summary.plan));
        span.record("outcome", field::display(&summary.outcome));
        span.record("elapsed_ms", elapsed_ms(summary.elapsed));
        tracing::debug!(parent: &span, %summary, "unit of work finished");
        record_metrics(&summary);
        let mut delivery = uow.delivery;
        if let Some(delivery) = delivery.as_mut() {
            delivery.completed &= result.is_ok();
        }
        (result.map(|value| Completed { value, summary }), delivery)
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
            occurred_at: chrono::Utc::now(),
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
    async fn write_outbox(&mut self) -> Result<(), E> {
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
    async fn complete_in_transaction(&mut self) -> Result<(), E> {
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

    fn databases(&self) -> &Databases {
        &self.pipelines.databases
    }

    fn two_phase(&self) -> bool {
        matches!(self.plan, CommitPlan::TwoPhase { .. })
    }

    /// After a committed run that wrote messages: wakes this process's dispatchers of
    /// each database and, after a two-phase commit, notifies the listening ones
    /// (a local transaction notified as it committed).
    async fn wake_dispatchers(&self) {
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

/// Per pipeline: runs and failures, duration, and rows affected; per step: runs by
/// outcome and duration.
fn record_metrics(summary: &RunSummary) {
    let pipeline = summary.pipeline;
    let outcome = match summary.outcome {
        Outcome::Committed => "committed",
        Outcome::RolledBack { .. } => "rolled_back",
    };
    metrics::counter!("switchyard_unit_of_work_runs_total", "pipeline" => pipeline, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("switchyard_unit_of_work_duration_seconds", "pipeline" => pipeline)
        .record(summary.elapsed.as_secs_f64());
    for step in &summary.steps {
        let outcome = if step.succeeded { "ok" } else { "error" };
        metrics::counter!("switchyard_unit_of_work_steps_total", "pipeline" => pipeline, "step" => step.name, "boundary" => step.boundary, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("switchyard_unit_of_work_step_duration_seconds", "pipeline" => pipeline, "step" => step.name)
            .record(step.elapsed.as_secs_f64());
    }
    let rows: u64 = summary.steps.iter().filter_map(|s| s.rows).sum();
    if rows > 0 && summary.outcome == Outcome::Committed {
        metrics::counter!("switchyard_unit_of_work_rows_total", "pipeline" => pipeline)
            .increment(rows);
    }
}

fn elapsed_ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}
