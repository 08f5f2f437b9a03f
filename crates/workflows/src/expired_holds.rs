//! The expired-holds job: releases stock held by placements that will never release
//! it themselves. A hold whose placement is still running is left to that
//! placement (its compensation releases it); a hold whose placement is over (failed,
//! cancelled) or unknown goes back to available stock once it expires.

use std::collections::BTreeMap;

use orchestration::{
    Fabric, UnitOfWorkError,
    host::{Job, Tick, WorkerContext, WorkerError},
    saga::SagaError,
};
use uuid::Uuid;

/// Releases expired holds whose placement is gone, up to `batch` per tick.
#[derive(Debug, Clone)]
pub struct ReleaseExpiredHolds {
    fabric: Fabric,
    batch: u64,
}

impl ReleaseExpiredHolds {
    /// The job's name.
    pub const NAME: &'static str = "release_expired_holds";

    /// A job releasing up to `batch` holds per tick, on `fabric`.
    #[must_use]
    pub fn new(fabric: &Fabric, batch: u64) -> Self {
        Self {
            fabric: fabric.clone(),
            batch,
        }
    }
}

impl Job for ReleaseExpiredHolds {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(&self, _tick: Tick, context: &WorkerContext) -> Result<(), WorkerError> {
        let fabric = &self.fabric;
        let now = context.clock().now();
        let expired =
            inventory::expired_holds(fabric.connection(inventory::SCHEMA)?, now, self.batch)
                .await?;
        let mut by_reference: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for hold in expired {
            by_reference
                .entry(hold.reference)
                .or_default()
                .push(hold.id);
        }
        let mut released = 0usize;
        for (reference, holds) in by_reference {
            // A placement's holds carry its run id; a run that is still going owns
            // them.
            if let Ok(run_id) = Uuid::parse_str(&reference) {
                match fabric.sagas().run(run_id).await {
                    Ok(run) if run.run.state.is_active() => continue,
                    Ok(_) | Err(SagaError::UnknownRun(_)) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            fabric
                .unit_of_work("release_expired_holds")
                .run(async |uow| {
                    for id in &holds {
                        uow.step(inventory::SCHEMA, "release_stock", async |tx| {
                            match inventory::release(tx, *id, now).await {
                                // Released or committed meanwhile.
                                Ok(_) | Err(inventory::Error::ReservationNotHeld { .. }) => Ok(()),
                                Err(err) => Err(err),
                            }
                        })
                        .await?;
                    }
                    Ok::<_, ReleaseError>(())
                })
                .await?;
            released += holds.len();
            tracing::info!(
                reference,
                holds = holds.len(),
                "released expired stock holds"
            );
        }
        if released > 0 {
            metrics::counter!("switchyard_expired_holds_released_total").increment(released as u64);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum ReleaseError {
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
}
