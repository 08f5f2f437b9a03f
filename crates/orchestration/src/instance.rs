//! The registry of live instances: a fabric whose coordinator is PostgreSQL heartbeats
//! a row in `orchestration.instances` on it, through its control pool, from the first
//! time it prepares a transaction or holds a saga run (a fabric that only reads, such
//! as a CLI command's, writes nothing). Recovery on any instance can then tell an
//! undecided prepared transaction or a saga run whose instance is gone (roll it back,
//! take it over, now) from one still in flight.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

use crate::sql::postgres as pg;
use tokio_util::sync::CancellationToken;

/// How long a gone instance's row is kept before recovery deletes it.
const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// One instance's entry in the registry.
#[derive(Debug)]
pub(crate) struct Registration {
    instance: String,
    coordinator: DatabaseConnection,
    /// Set by the first [`Registration::ensure_registered`], which starts the
    /// heartbeats.
    started: AtomicBool,
    /// Set once a heartbeat was recorded: before that, a prepare must register first.
    registered: AtomicBool,
    interval: Duration,
    stop: CancellationToken,
}

impl Registration {
    /// The entry of `instance`, to heartbeat on `coordinator` (a control pool) five
    /// times per `timeout`. Nothing is written until
    /// [`Registration::ensure_registered`].
    pub(crate) fn new(
        instance: String,
        coordinator: DatabaseConnection,
        timeout: Duration,
    ) -> Self {
        Self {
            instance,
            coordinator,
            started: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            // Never a busy loop, however short the configured timeout.
            interval: (timeout / 5).max(Duration::from_millis(100)),
            stop: CancellationToken::new(),
        }
    }

    /// Records that this instance is alive now.
    async fn heartbeat(&self) -> Result<(), DbErr> {
        self.coordinator
            .execute_raw(pg(
                "INSERT INTO orchestration.instances (instance_id, started_at, heartbeat_at) \
                 VALUES ($1, now(), now()) \
                 ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now()",
                vec![self.instance.clone().into()],
            ))
            .await?;
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes sure a heartbeat was recorded before this instance prepares anything or
    /// holds a saga run (recovery takes an instance without a row for gone), and
    /// keeps heartbeating from then on. A failure is only logged; recovery may then
    /// roll a transaction back, which the coordinator sees as an abort (its decision
    /// loses), or take a run over, which its driver sees as a lost lease: never a
    /// torn commit or a repeated effect.
    pub(crate) async fn ensure_registered(self: &Arc<Self>) {
        if self.registered.load(Ordering::Acquire) {
            return;
        }
        if let Err(err) = self.heartbeat().await {
            tracing::warn!(instance = self.instance, error = %err, "cannot register this instance");
        }
        if !self.started.swap(true, Ordering::AcqRel) {
            self.spawn();
        }
    }

    /// Heartbeats until [`Registration::deregister`] or until the registration is
    /// dropped; a failed heartbeat (the database restarting) is retried on the next
    /// one.
    fn spawn(self: &Arc<Self>) {
        let registration = Arc::downgrade(self);
        let stop = self.stop.clone();
        let interval = self.interval;
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let Some(alive) = registration.upgrade() else {
                    return;
                };
                match alive.heartbeat().await {
                    Ok(()) => failing = false,
                    Err(err) if !failing => {
                        failing = true;
                        tracing::debug!(instance = alive.instance, error = %err, "heartbeat failed; retrying");
                    }
                    Err(_) => {}
                }
                drop(alive);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
    }

    /// Stops heartbeating and removes this instance's row, so that recovery elsewhere
    /// need not wait for the heartbeat to age.
    pub(crate) async fn deregister(&self) {
        self.stop.cancel();
        if !self.started.load(Ordering::Acquire) {
            return;
        }
        let deleted = self
            .coordinator
            .execute_raw(pg(
                "DELETE FROM orchestration.instances WHERE instance_id = $1",
                vec![self.instance.clone().into()],
            ))
            .await;
        if let Err(err) = deleted {
            tracing::debug!(instance = self.instance, error = %err, "cannot deregister this instance");
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The instances whose heartbeat is younger than `timeout`; rows of instances gone for
/// longer than a day are deleted on the way.
pub(crate) async fn live(
    coordinator: &DatabaseConnection,
    timeout: Duration,
) -> Result<BTreeSet<String>, DbErr> {
    coordinator
        .execute_raw(pg(
            "DELETE FROM orchestration.instances \
             WHERE heartbeat_at < now() - make_interval(secs => $1)",
            vec![RETENTION.as_secs_f64().into()],
        ))
        .await?;
    let rows = coordinator
        .query_all_raw(pg(
            "SELECT instance_id FROM orchestration.instances \
             WHERE heartbeat_at > now() - make_interval(secs => $1)",
            vec![timeout.as_secs_f64().into()],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get("", "instance_id"))
        .collect()
}
