//! Singleton leases: one row per singleton job in `orchestration.worker_leases`
//! saying which instance holds the job, until when, and the last tick that ran.
//!
//! Claiming a tick is one conditional `UPDATE`: it succeeds only if the tick is newer
//! than the last one run anywhere and the lease is free (expired or released) or
//! already ours. The database serialises concurrent claims on the row, so each tick
//! runs on exactly one instance, and a dead holder's lease is taken once it expires.
//! Times are compared as milliseconds since the Unix epoch, by the claimers' clocks:
//! instances' clocks should agree to well within the lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query, TableRef};
use sea_orm::{DatabaseConnection, DbErr};

use crate::clock::epoch_millis;
use crate::databases::Databases;
use crate::schema::COORDINATOR_BOUNDARY;
use crate::schema::WorkerLeasesTable as Leases;
use crate::sql::execute;

/// This instance's view of one singleton job's lease.
#[derive(Debug)]
pub(super) struct Lease {
    connection: DatabaseConnection,
    job: String,
    holder: String,
    ttl: Duration,
    /// While held: until when, by our clock, and when to renew next.
    held: Option<Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    until: DateTime<Utc>,
    renew_at: DateTime<Utc>,
}

impl Lease {
    /// Makes sure the job's row exists.
    pub(super) async fn prepare(
        databases: &Databases,
        job: &str,
        ttl: Duration,
    ) -> Result<Self, DbErr> {
        let connection = databases
            .connection(COORDINATOR_BOUNDARY)
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .clone();
        let lease = Self {
            connection,
            job: job.to_owned(),
            holder: databases.holder(),
            ttl,
            held: None,
        };
        let insert = Query::insert()
            .into_table(table())
            .columns([
                Leases::Name,
                Leases::Holder,
                Leases::ExpiresAtMs,
                Leases::LastTickMs,
            ])
            .values_panic([job.into(), "".into(), 0i64.into(), 0i64.into()])
            .on_conflict(
                OnConflict::column(Leases::Name)
                    .do_nothing_on([Leases::Name])
                    .to_owned(),
            )
            .to_owned();
        execute(&lease.connection, &insert).await?;
        Ok(lease)
    }

    /// Claims the tick at `tick` for this instance; `false` if another instance ran
    /// it or holds the lease.
    pub(super) async fn claim(
        &mut self,
        tick: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, DbErr> {
        let update = Query::update()
            .table(table())
            .value(Leases::Holder, self.holder.as_str())
            .value(Leases::ExpiresAtMs, epoch_millis(now + self.ttl))
            .value(Leases::LastTickMs, epoch_millis(tick))
            .and_where(Expr::col(Leases::Name).eq(self.job.as_str()))
            .and_where(Expr::col(Leases::LastTickMs).lt(epoch_millis(tick)))
            .and_where(
                Expr::col(Leases::Holder)
                    .eq(self.holder.as_str())
                    .or(Expr::col(Leases::ExpiresAtMs).lte(epoch_millis(now))),
            )
            .to_owned();
        let claimed = execute(&self.connection, &update).await? == 1;
        if claimed {
            self.held_from(now);
        } else {
            self.held = None;
        }
        Ok(claimed)
    }

    /// When the lease should next be renewed, while it is held.
    pub(super) fn renew_at(&self) -> Option<DateTime<Utc>> {
        self.held.map(|held| held.renew_at)
    }

    pub(super) fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Renews the lease if it is held and due. A renewal that fails is retried soon;
    /// once the lease has expired by our clock, or another instance holds it, it is no
    /// longer held.
    pub(super) async fn renew_if_due(&mut self, now: DateTime<Utc>) {
        let Some(held) = self.held else { return };
        if now < held.renew_at {
            return;
        }
        let update = Query::update()
            .table(table())
            .value(Leases::ExpiresAtMs, epoch_millis(now + self.ttl))
            .and_where(Expr::col(Leases::Name).eq(self.job.as_str()))
            .and_where(Expr::col(Leases::Holder).eq(self.holder.as_str()))
            .and_where(Expr::col(Leases::ExpiresAtMs).gt(epoch_millis(now)))
            .to_owned();
        match execute(&self.connection, &update).await {
            Ok(1) => self.held_from(now),
            Ok(_) => {
                tracing::warn!(holder = %self.holder, "the singleton lease was lost");
                self.held = None;
            }
            Err(err) if now + self.ttl / 10 < held.until => {
                tracing::warn!(error = %err, "renewing the singleton lease failed; retrying");
                self.held = Some(Held {
                    renew_at: now + self.ttl / 10,
                    ..held
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "renewing the singleton lease failed; it expires");
                self.held = None;
            }
        }
    }

    /// Gives the lease up so another instance can take the next tick without waiting
    /// for it to expire.
    pub(super) async fn release(&mut self) {
        if self.held.take().is_none() {
            return;
        }
        let update = Query::update()
            .table(table())
            .value(Leases::ExpiresAtMs, 0i64)
            .and_where(Expr::col(Leases::Name).eq(self.job.as_str()))
            .and_where(Expr::col(Leases::Holder).eq(self.holder.as_str()))
            .to_owned();
        if let Err(err) = execute(&self.connection, &update).await {
            tracing::warn!(error = %err, "releasing the singleton lease failed; it expires");
        }
    }

    fn held_from(&mut self, now: DateTime<Utc>) {
        self.held = Some(Held {
            until: now + self.ttl,
            renew_at: now + self.ttl / 3,
        });
    }
}

fn table() -> TableRef {
    (Alias::new(COORDINATOR_BOUNDARY), Leases::Table).into()
}
