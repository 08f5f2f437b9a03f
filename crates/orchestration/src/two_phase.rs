//! Two-phase commit across PostgreSQL databases, and recovery of in-doubt transactions.
//!
//! Each participant prepares (`PREPARE TRANSACTION gid`); the coordinator then records
//! its decision in `orchestration.two_phase_decisions` on the coordinator database
//! (the one holding the `orchestration` boundary) and only then commits the prepared
//! transactions. Recovery commits a prepared transaction whose run has a `commit`
//! decision and rolls back one without a decision once it is older than a timeout, by
//! first recording an `abort` decision: the decision's primary key makes the
//! coordinator's `commit` and recovery's `abort` mutually exclusive. A prepared
//! transaction whose preparing instance is gone (its heartbeat in
//! `orchestration.instances` stale or missing) is rolled back the same way at once.
//!
//! Everything after the prepare runs on each database's control pool, which nothing
//! that waits on a row lock ever uses: the ordinary pool may be exhausted by
//! statements waiting on the very locks a prepared transaction holds, and the second
//! phase must still get through to release them.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::databases::Databases;
use crate::error::UnitOfWorkError;
use crate::host::{Job, Tick, WorkerContext, WorkerError};
use crate::sql::postgres as pg;
use crate::topology::DatabaseId;

/// A transaction a unit of work began on database `database` (an index into
/// [`Databases`]).
pub(crate) struct OpenTransaction {
    pub(crate) database: usize,
    pub(crate) transaction: sea_orm::DatabaseTransaction,
}

/// Every global transaction id Switchyard prepares starts with this.
pub(crate) const GID_PREFIX: &str = "sy:";

/// How long an abort decision is kept, so that a coordinator that wakes up late finds
/// it instead of committing a run whose participants were rolled back.
const ABORT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A participant's global transaction id: `sy:<instance>:<run>:<participant>`, unique in
/// the cluster.
pub(crate) fn gid(instance: &str, run_id: Uuid, participant: usize) -> String {
    format!("{GID_PREFIX}{instance}:{run_id}:{participant}")
}

/// The run id inside a gid of ours.
fn run_of(gid: &str) -> Option<&str> {
    gid.strip_prefix(GID_PREFIX)?.split(':').nth(1)
}

/// The instance that prepared a gid of ours.
fn instance_of(gid: &str) -> Option<&str> {
    gid.strip_prefix(GID_PREFIX)?.split(':').next()
}

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Prepared transactions committed because their run had decided to commit.
    pub committed: Vec<String>,
    /// Prepared transactions rolled back because their run never decided and either
    /// it was older than the timeout or its instance was gone.
    pub rolled_back: Vec<String>,
    /// Prepared transactions left alone: undecided but younger than the timeout.
    pub pending: Vec<String>,
}

impl RecoveryReport {
    /// Whether recovery found nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.resolved_any() && self.pending.is_empty()
    }

    /// Whether recovery committed or rolled back anything (pending transactions may
    /// just be commits in flight on a live instance).
    #[must_use]
    pub fn resolved_any(&self) -> bool {
        !self.committed.is_empty() || !self.rolled_back.is_empty()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} committed, {} rolled back, {} pending",
            self.committed.len(),
            self.rolled_back.len(),
            self.pending.len()
        )
    }
}

/// Commits `participants` atomically.
pub(crate) async fn commit(
    databases: &Databases,
    run_id: Uuid,
    participants: Vec<OpenTransaction>,
) -> Result<(), UnitOfWorkError> {
    let coordinator = databases
        .coordinator()
        .ok_or(UnitOfWorkError::NoCoordinator)?;
    if let Some(registration) = databases.registration() {
        registration.ensure_registered().await;
    }
    let mut prepared: Vec<(usize, String)> = Vec::with_capacity(participants.len());
    let mut remaining = participants.into_iter().enumerate();
    while let Some((index, participant)) = remaining.next() {
        let gid = gid(databases.instance(), run_id, index);
        let sql = format!("PREPARE TRANSACTION '{gid}'");
        let result = match participant.transaction.execute_unprepared(&sql).await {
            // The transaction is prepared; sqlx's COMMIT after it only warns that no
            // transaction is in progress.
            Ok(_) => participant.transaction.commit().await,
            Err(err) => Err(err),
        };
        if let Err(source) = result {
            // Dropping the rest rolls them back.
            drop(remaining);
            rollback_prepared(databases, &prepared).await;
            return Err(UnitOfWorkError::Prepare {
                database: databases.database(participant.database).0.clone(),
                source,
            });
        }
        prepared.push((participant.database, gid));
        if index == 0 {
            // Some participants prepared, the others not yet, nothing decided.
            crate::fault::point("two_phase.after_prepare");
        }
    }

    let participants_text = prepared
        .iter()
        .map(|(_, gid)| gid.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let decided = databases
        .control(coordinator)
        .1
        .execute_raw(pg(
            "INSERT INTO orchestration.two_phase_decisions (run_id, decision, participants, decided_at) \
             VALUES ($1, 'commit', $2, now()) ON CONFLICT (run_id) DO NOTHING",
            vec![run_id.to_string().into(), participants_text.into()],
        ))
        .await;
    match decided {
        Ok(result) if result.rows_affected() == 1 => {}
        // Recovery decided to abort first (the run took longer than its timeout).
        Ok(_) => {
            rollback_prepared(databases, &prepared).await;
            return Err(UnitOfWorkError::Aborted { run_id });
        }
        Err(source) => {
            rollback_prepared(databases, &prepared).await;
            return Err(UnitOfWorkError::Decide {
                database: databases.control(coordinator).0.clone(),
                source,
            });
        }
    }
    crate::fault::point("two_phase.after_decision");

    // Decided: from here on the run is committed. A participant that cannot be
    // committed now is committed by recovery, which finds the decision.
    let mut unresolved = 0;
    for (database, gid) in &prepared {
        let (id, connection) = databases.control(*database);
        if let Err(err) = finish(connection, "COMMIT", gid).await {
            unresolved += 1;
            tracing::warn!(database = %id, gid, error = %err, "COMMIT PREPARED failed; recovery will finish it");
        }
    }
    if unresolved == 0 {
        forget(databases.control(coordinator).1, &run_id.to_string()).await;
    }
    Ok(())
}

/// `COMMIT PREPARED` or `ROLLBACK PREPARED`, outside any transaction. A gid that no
/// longer exists was resolved by someone else (recovery or the coordinator).
async fn finish(connection: &DatabaseConnection, verb: &str, gid: &str) -> Result<(), DbErr> {
    match connection
        .execute_unprepared(&format!("{verb} PREPARED '{gid}'"))
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if is_unknown_prepared_transaction(&err) => Ok(()),
        Err(err) => Err(err),
    }
}

/// PostgreSQL's "prepared transaction with identifier … does not exist" (SQLSTATE
/// 42704, `undefined_object`), recognised by its code so any server locale works.
fn is_unknown_prepared_transaction(err: &DbErr) -> bool {
    matches!(
        crate::failure::sqlx_error(err),
        Some(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42704")
    )
}

async fn rollback_prepared(databases: &Databases, prepared: &[(usize, String)]) {
    for (database, gid) in prepared {
        let (id, connection) = databases.control(*database);
        if let Err(err) = finish(connection, "ROLLBACK", gid).await {
            tracing::warn!(database = %id, gid, error = %err, "ROLLBACK PREPARED failed; recovery will finish it");
        }
    }
}

async fn forget(coordinator: &DatabaseConnection, run_id: &str) {
    let deleted = coordinator
        .execute_raw(pg(
            "DELETE FROM orchestration.two_phase_decisions WHERE run_id = $1 AND decision = 'commit'",
            vec![run_id.into()],
        ))
        .await;
    if let Err(err) = deleted {
        tracing::warn!(run_id, error = %err, "could not remove a resolved decision; recovery will");
    }
}

/// Resolves prepared transactions left in doubt by a crash, on every PostgreSQL
/// database: commits those whose run decided to commit, rolls back the undecided ones
/// that are older than `older_than` or whose instance is gone. Run it at start-up and
/// periodically ([`InDoubtRecovery`] does).
///
/// # Errors
/// A database could not be read or a prepared transaction could not be resolved.
pub async fn recover_in_doubt(
    databases: &Databases,
    older_than: Duration,
) -> Result<RecoveryReport, RecoveryError> {
    let mut report = RecoveryReport::default();
    let Some(coordinator) = databases.coordinator() else {
        return Ok(report);
    };
    let (coordinator_id, coordinator_db) = databases.control(coordinator);
    let on_coordinator = |source| RecoveryError::new(coordinator_id, source);
    // Listed before the live instances are read: an instance registers before it
    // prepares, so the preparer of every transaction listed here that is still alive
    // has a fresh heartbeat by then.
    let mut in_doubt = Vec::new();
    for (database, connection) in databases.postgres_databases() {
        for (gid, expired) in list_prepared(database, connection, older_than).await? {
            in_doubt.push((database, connection, gid, expired));
        }
    }
    if in_doubt.is_empty()
        && !has_decisions(coordinator_db)
            .await
            .map_err(on_coordinator)?
    {
        return Ok(report);
    }
    let live = crate::instance::live(coordinator_db, databases.settings().instance_timeout)
        .await
        .map_err(on_coordinator)?;
    for (database, connection, gid, expired) in in_doubt {
        let (Some(run_id), Some(instance)) = (run_of(&gid), instance_of(&gid)) else {
            continue;
        };
        let gone = instance != databases.instance() && !live.contains(instance);
        let decision = decision_of(coordinator_db, run_id, expired || gone)
            .await
            .map_err(on_coordinator)?;
        match decision.as_deref() {
            Some("commit") => {
                finish(connection, "COMMIT", &gid)
                    .await
                    .map_err(|source| RecoveryError::new(database, source))?;
                metrics::counter!("switchyard_two_phase_recovered_total", "decision" => "commit")
                    .increment(1);
                report.committed.push(gid);
            }
            Some(_) => {
                finish(connection, "ROLLBACK", &gid)
                    .await
                    .map_err(|source| RecoveryError::new(database, source))?;
                metrics::counter!("switchyard_two_phase_recovered_total", "decision" => "rollback")
                    .increment(1);
                report.rolled_back.push(gid);
            }
            None => report.pending.push(gid),
        }
    }
    // Commit decisions whose participants are all resolved are done with; abort
    // decisions are kept a while for late coordinators.
    let rows = coordinator_db
        .query_all_raw(pg(
            "SELECT run_id FROM orchestration.two_phase_decisions \
             WHERE decision = 'commit' OR decided_at < now() - make_interval(secs => $1)",
            vec![ABORT_RETENTION.as_secs_f64().into()],
        ))
        .await
        .map_err(on_coordinator)?;
    if rows.is_empty() {
        return Ok(report);
    }
    // Listed afresh, after reading the decisions: a coordinator that decided after the
    // listing above still has its participants prepared here, so its decision stays.
    let prepared_now = prepared_runs(databases).await?;
    for row in rows {
        let run_id: String = row.try_get("", "run_id").map_err(on_coordinator)?;
        if !prepared_now.contains(&run_id) {
            coordinator_db
                .execute_raw(pg(
                    "DELETE FROM orchestration.two_phase_decisions WHERE run_id = $1",
                    vec![run_id.into()],
                ))
                .await
                .map_err(on_coordinator)?;
        }
    }
    Ok(report)
}

/// Whether the decision log holds anything (a cheap look before the full pass).
async fn has_decisions(coordinator: &DatabaseConnection) -> Result<bool, DbErr> {
    Ok(coordinator
        .query_one_raw(pg(
            "SELECT 1 AS found FROM orchestration.two_phase_decisions LIMIT 1",
            vec![],
        ))
        .await?
        .is_some())
}

/// The run's decision. For an expired run without one, records `abort` first, so that
/// a coordinator still running cannot commit it afterwards.
async fn decision_of(
    coordinator: &DatabaseConnection,
    run_id: &str,
    expired: bool,
) -> Result<Option<String>, DbErr> {
    if expired {
        coordinator
            .execute_raw(pg(
                "INSERT INTO orchestration.two_phase_decisions (run_id, decision, participants, decided_at) \
                 VALUES ($1, 'abort', '', now()) ON CONFLICT (run_id) DO NOTHING",
                vec![run_id.into()],
            ))
            .await?;
    }
    let row = coordinator
        .query_one_raw(pg(
            "SELECT decision FROM orchestration.two_phase_decisions WHERE run_id = $1",
            vec![run_id.into()],
        ))
        .await?;
    row.map(|row| row.try_get("", "decision")).transpose()
}

/// The runs that still have a prepared transaction on one of the fabric's databases.
async fn prepared_runs(databases: &Databases) -> Result<BTreeSet<String>, RecoveryError> {
    let mut runs = BTreeSet::new();
    for (database, connection) in databases.postgres_databases() {
        for (gid, _) in list_prepared(database, connection, Duration::ZERO).await? {
            if let Some(run) = run_of(&gid) {
                runs.insert(run.to_owned());
            }
        }
    }
    Ok(runs)
}

/// Our prepared transactions on one database, each with whether it is older than
/// `older_than`.
async fn list_prepared(
    database: &DatabaseId,
    connection: &DatabaseConnection,
    older_than: Duration,
) -> Result<Vec<(String, bool)>, RecoveryError> {
    let rows = connection
        .query_all_raw(pg(
            "SELECT gid, (now() - prepared) > make_interval(secs => $1) AS expired \
             FROM pg_prepared_xacts WHERE database = current_database() AND gid LIKE 'sy:%'",
            vec![older_than.as_secs_f64().into()],
        ))
        .await
        .map_err(|source| RecoveryError::new(database, source))?;
    rows.iter()
        .map(|row| {
            let gid = row.try_get("", "gid")?;
            let expired = row.try_get("", "expired")?;
            Ok((gid, expired))
        })
        .collect::<Result<_, DbErr>>()
        .map_err(|source| RecoveryError::new(database, source))
}

/// Recovery could not read or resolve in-doubt transactions.
#[derive(Debug, thiserror::Error)]
#[error("recovering in-doubt transactions on {database} failed: {source}")]
pub struct RecoveryError {
    /// The database.
    pub database: DatabaseId,
    /// The database's error.
    pub source: DbErr,
}

impl RecoveryError {
    fn new(database: &DatabaseId, source: DbErr) -> Self {
        Self {
            database: database.clone(),
            source,
        }
    }
}

/// Resolves in-doubt two-phase commits left by a crash of any instance: a job to run
/// on the worker host of every instance. It is no singleton: a singleton's lease is
/// taken through the ordinary pool, which load can exhaust, and recovery from two
/// instances at once is safe (the decision log makes them agree).
#[derive(Debug, Clone)]
pub struct InDoubtRecovery {
    databases: Databases,
    older_than: Duration,
}

impl InDoubtRecovery {
    /// The job's name, for configuration and health.
    pub const NAME: &'static str = "two_phase_recovery";

    /// Rolls back undecided prepared transactions on `databases` older than
    /// `older_than`, and finishes decided ones.
    #[must_use]
    pub fn new(databases: &Databases, older_than: Duration) -> Self {
        Self {
            databases: databases.clone(),
            older_than,
        }
    }
}

impl Job for InDoubtRecovery {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(&self, _tick: Tick, _context: &WorkerContext) -> Result<(), WorkerError> {
        let report = recover_in_doubt(&self.databases, self.older_than).await?;
        if report.resolved_any() {
            tracing::warn!(%report, "resolved in-doubt two-phase commits");
        } else if !report.is_empty() {
            tracing::debug!(%report, "two-phase commits in flight");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_carry_their_run() {
        let run = Uuid::now_v7();
        let gid = gid("ab12cd34", run, 1);
        assert!(gid.starts_with(GID_PREFIX));
        assert_eq!(run_of(&gid), Some(run.to_string().as_str()));
        assert_eq!(instance_of(&gid), Some("ab12cd34"));
        assert_eq!(run_of("someone-else"), None);
        assert_eq!(instance_of("someone-else"), None);
    }
}
