//! One classification of failures for everything that retries (saga steps, event
//! handlers, gateways): a failure is worth trying again later or it is not; and, at the
//! edge, whether a database is unavailable right now (a 503, not a 500).

use sea_orm::DbErr;

/// Whether trying the same thing again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A hiccup (a database or network error, a lost lock wait): worth retrying with
    /// backoff, a bounded number of times.
    Transient,
    /// Retrying gets the same answer (a bug, a request the other side will never
    /// accept, a topology that cannot commit).
    Permanent,
}

/// An error that knows whether retrying can help.
pub trait Classify {
    /// How this failure should be treated.
    fn failure(&self) -> Failure;
}

/// Any database error is transient: the server may be back, the lock free, the
/// deadlock gone. Retries are bounded, so a statement that is simply wrong fails after
/// its last attempt.
impl Classify for DbErr {
    fn failure(&self) -> Failure {
        Failure::Transient
    }
}

/// The driver's error inside a statement's failure, to read its kind or code.
pub(crate) fn sqlx_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(source))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(source)) => Some(source),
        _ => None,
    }
}

/// Whether `err` says the database cannot be used right now (unreachable, restarting,
/// out of connections, or a transaction that lost a lock wait or a deadlock) rather
/// than that the statement is wrong: the same request is worth sending again later.
/// At the edge it is a 503 with `Retry-After`, not a 500.
#[must_use]
pub fn is_unavailable(err: &DbErr) -> bool {
    if matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
        return true;
    }
    let Some(source) = sqlx_error(err) else {
        return false;
    };
    match source {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // MySQL's error numbers: lock wait timeout, deadlock, too many
            // connections.
            if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return matches!(mysql.number(), 1205 | 1213 | 1040);
            }
            // PostgreSQL's SQLSTATEs: connection exceptions
            // (08…), shutdown and recovery (57P…), too many connections (53300), lock
            // timeout (55P03), serialization failure and deadlock (40001, 40P01).
            // SQLite's result codes: busy and locked (5, 6, and their extended codes).
            db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57P")
                    || matches!(code.as_ref(), "53300" | "55P03" | "40001" | "40P01")
                    || (db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                        && code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)))
            })
        }
        _ => false,
    }
}
