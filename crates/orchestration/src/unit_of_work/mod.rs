//! Units of work: a named pipeline of steps, each naming the boundary it touches, that
//! commit together (one local transaction, or two-phase commit across PostgreSQL
//! databases), and the `RunSummary` that describes a run.

mod steps;
mod summary;

use std::fmt;
use std::marker::PhantomData;
use std::time::Instant;

use tracing::{Instrument, field};
use uuid::Uuid;

use crate::databases::{CommitPlan, Databases};
use crate::error::UnitOfWorkError;
use crate::outbox::{Delivery, Outbox, TraceContext};

pub use steps::UnitOfWork;
pub use summary::{Completed, Outcome, RunSummary, StepSummary};
use summary::{elapsed_ms, record_metrics};

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
