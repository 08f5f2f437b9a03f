//! The recovery worker: on every instance, claims unfinished runs whose lease ran out
//! (their driver crashed) or was given up (their instance shut down) and drives them
//! on from their last checkpoint. Its stop is the instance's: every run this process
//! drives finishes its step in flight and is handed over.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::Sagas;
use super::start::run_store;
use super::store;
use crate::host::{Worker, WorkerContext, WorkerError};

/// How the recovery worker looks for abandoned runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaRecoveryOptions {
    /// How often it looks.
    pub poll_interval: Duration,
    /// Runs it drives at once.
    pub concurrency: usize,
}

impl Default for SagaRecoveryOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            concurrency: 8,
        }
    }
}

/// The hosted worker that resumes abandoned saga runs of the sagas registered on its
/// fabric. Every instance runs one; concurrent claimers never take the same run.
///
/// When it stops, so does every run this process drives (started here or resumed):
/// each finishes the step in flight, bounded by the step's timeout, then gives up its
/// lease, and any instance's recovery resumes it at once rather than after the lease.
#[derive(Debug, Clone)]
pub struct SagaRecovery {
    sagas: Sagas,
    options: SagaRecoveryOptions,
}

impl SagaRecovery {
    /// The worker's name.
    pub const NAME: &'static str = "saga_recovery";

    /// A recovery worker for the runs of `sagas`, with `options`.
    #[must_use]
    pub fn new(sagas: &Sagas, options: SagaRecoveryOptions) -> Self {
        Self {
            sagas: sagas.clone(),
            options,
        }
    }
}

impl Worker for SagaRecovery {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(&self, context: WorkerContext) -> Result<(), WorkerError> {
        let sagas = &self.sagas;
        let holder = sagas.databases().holder();
        // Without the `orchestration` boundary no saga can be registered: nothing to do.
        let Ok(runs) = run_store(sagas).map(|store| store.connection.clone()) else {
            context.health().running();
            context.shutdown().cancelled().await;
            return Ok(());
        };
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        // Where instances heartbeat, a run whose holder went silent is taken over at
        // once; this instance registers first, so its own claims are never taken.
        let gone_after = match sagas.databases().registration() {
            Some(registration) => {
                registration.ensure_registered().await;
                Some(sagas.databases().settings().instance_timeout)
            }
            None => None,
        };
        context.health().running();
        loop {
            let (names, lease) = sagas.names_and_lease();
            let free = permits.available_permits();
            if !names.is_empty() && free > 0 {
                let claimed = store::claim_expired(
                    &runs,
                    &holder,
                    &names,
                    context.clock().now(),
                    lease,
                    free as u64,
                    gone_after,
                )
                .await;
                match claimed {
                    Ok(claimed) => {
                        for (id, saga) in claimed {
                            let Some(driven) = sagas.registered(&saga) else {
                                continue;
                            };
                            tracing::info!(saga, run_id = %id, "resuming an unfinished saga run whose lease ran out or was given up, or whose instance is gone");
                            metrics::counter!("switchyard_saga_runs_recovered_total", "saga" => saga)
                                .increment(1);
                            let permit = Arc::clone(&permits).acquire_owned().await?;
                            let driver_sagas = sagas.clone();
                            sagas.drivers().spawn(move |stop| {
                                let drive = driven.drive(driver_sagas, id, stop);
                                Box::pin(async move {
                                    drive.await;
                                    drop(permit);
                                })
                            });
                        }
                    }
                    // Transient (the database restarting): look again next time.
                    Err(err) => tracing::warn!(error = %err, "cannot claim abandoned saga runs"),
                }
            }
            if !context.sleep(self.options.poll_interval).await {
                sagas.drivers().stop().await;
                return Ok(());
            }
        }
    }
}
