//! What a unit of work that delivers an event does besides the handler's work: record
//! the delivery in the inbox of each database it touches (and stop if an earlier
//! delivery's effect committed), and mark the message done in its own transaction when
//! it has one on the message's database.

use sea_orm::{DatabaseTransaction, DbErr};
use uuid::Uuid;

use super::store;
use super::{Envelope, TraceContext};
use crate::clock::Clock;

/// The delivery of one claimed message to one subscriber, carried by the handler's
/// unit of work.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) subscriber: &'static str,
    pub(crate) event_id: Uuid,
    /// The emitting run's trace, which the handler's run joins.
    pub(crate) trace: Option<TraceContext>,
    /// The index of the database holding the message.
    database: usize,
    message_id: String,
    ordering_key: String,
    /// The claimer, which must still hold the message.
    holder: String,
    /// When the inbox record and the completion are stamped.
    clock: Clock,
    /// The inbox showed the event already handled; nothing may commit.
    pub(crate) already_handled: bool,
    /// The message was marked done in the run's transaction.
    pub(crate) completed: bool,
}

impl Delivery {
    /// The delivery of `envelope` (message `message_id` on database `database`,
    /// claimed by `holder`) to `subscriber`, stamped by `clock`.
    pub(crate) fn new(
        subscriber: &'static str,
        envelope: &Envelope,
        database: usize,
        message_id: String,
        holder: String,
        clock: Clock,
    ) -> Self {
        Self {
            clock,
            subscriber,
            event_id: envelope.event_id,
            trace: envelope.trace(),
            database,
            message_id,
            ordering_key: envelope.ordering_key.clone(),
            holder,
            already_handled: false,
            completed: false,
        }
    }

    /// Records the delivery in the inbox, in a transaction the run just began;
    /// `false` (and remembered) if an earlier delivery's record is there.
    pub(crate) async fn record_in_inbox(
        &mut self,
        tx: &DatabaseTransaction,
    ) -> Result<bool, DbErr> {
        let first =
            store::record_in_inbox(tx, self.subscriber, self.event_id, self.clock.now()).await?;
        self.already_handled |= !first;
        Ok(first)
    }

    /// Before the run commits: marks the message done in the run's transaction on the
    /// message's database, if `open` (the run's transactions by database index) has
    /// one there; the effect and the completion then commit together, and the
    /// dispatcher saves a write.
    pub(crate) async fn complete_in<'a>(
        &mut self,
        mut open: impl Iterator<Item = (usize, &'a DatabaseTransaction)>,
    ) -> Result<(), DbErr> {
        let Some((_, tx)) = open.find(|(database, _)| *database == self.database) else {
            return Ok(());
        };
        let message = store::MessageKey {
            id: &self.message_id,
            subscriber: self.subscriber,
            ordering_key: &self.ordering_key,
        };
        self.completed = store::complete(tx, &self.holder, message, self.clock.now()).await?;
        Ok(())
    }

    /// The database holding the message.
    pub(crate) fn database(&self) -> usize {
        self.database
    }
}
