//! The registry of live instances: each fabric that coordinates two-phase commits
//! heartbeats a row in `orchestration.instances` on the coordinator database, through
//! its control pool, so that recovery on any instance can tell an undecided prepared
//! transaction whose instance is gone (roll it back now) from one still in flight.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio_util::sync::CancellationToken;

/// How long a gone instance's row is kept before recovery deletes it.
const RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// One instance's entry in the registry.
#[derive(Debug)]
pub(crate) struct Registration {
    instance: String,
    coordinator: DatabaseConnection,
    /// Set once a heartbeat was recorded: before that, a prepare must register first.
    registered: AtomicBool,
    interval: Duration,
    stop: CancellationToken,
}

fn pg(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

impl Registration {
    /// The entry of `instance`, heartbeating on `coordinator` (a control pool) five
    /// times per `timeout`. Nothing is written until [`Registration::heartbeat`] or
    /// [`Registration::spawn`].
    pub(crate) fn new(
        instance: String,
        coordinator: DatabaseConnection,
        timeout: Duration,
    ) -> Self {
        Self {
            instance,
            coordinator,
            registered: AtomicBool::new(false),
            // Never a busy loop, however short the configured timeout.
            interval: (timeout / 5).max(Duration::from_millis(100)),
            stop: CancellationToken::new(),
        }
    }

    /// Records that this instance is alive now.
    pub(crate) async fn heartbeat(&self) -> Result<(), DbErr> {
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

    /// Makes sure a heartbeat was recorded before this instance prepares anything:
    /// recovery takes the preparer of a transaction without a row for gone. A failure
    /// is only logged; recovery may then roll the transaction back, which the
    /// coordinator sees as an abort (its decision loses), never as a torn commit.
    pub(crate) async fn ensure_registered(&self) {
        if self.registered.load(Ordering::Acquire) {
            return;
        }
        if let Err(err) = self.heartbeat().await {
            tracing::warn!(instance = self.instance, error = %err, "cannot register this instance");
        }
    }

    /// Heartbeats until [`Registration::deregister`] or until the registration is
    /// dropped; a failed heartbeat (the table not migrated yet, the database
    /// restarting) is retried on the next one.
    pub(crate) fn spawn(self: &Arc<Self>) {
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
