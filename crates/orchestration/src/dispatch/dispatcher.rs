//! The dispatcher: a hosted worker that, on every database, claims due
//! outbox messages, delivers them to their subscribers, and records the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::EventBus;
use super::options::DispatcherOptions;
use crate::clock::Clock;
use crate::host::{Worker, WorkerContext, WorkerError};
use crate::outbox::Delivery;
use crate::outbox::store::{self, AfterFailure, Claimed};
use crate::topology::DatabaseId;

/// The outbox dispatcher worker. Register it on a host; run it on every instance.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    bus: EventBus,
    options: Arc<DispatcherOptions>,
}

impl Dispatcher {
    /// The worker's name.
    pub const NAME: &'static str = "outbox_dispatcher";

    /// A dispatcher of `bus`'s subscribers, with `options`.
    ///
    /// # Panics
    /// If the options are invalid ([`DispatcherOptions::validate`]): check options
    /// that come from configuration first.
    #[must_use]
    pub fn new(bus: &EventBus, options: DispatcherOptions) -> Self {
        if let Err(err) = options.validate() {
            panic!("invalid outbox dispatcher options: {err}");
        }
        Self {
            bus: bus.clone(),
            options: Arc::new(options),
        }
    }
}

impl Worker for Dispatcher {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(&self, context: WorkerContext) -> Result<(), WorkerError> {
        let mut loops = JoinSet::new();
        for database in 0..self.bus.databases().database_count() {
            let (outbox, finished) =
                DatabaseOutbox::new(&self.bus, database, &self.options, &context);
            loops.spawn(outbox.run(finished).instrument(tracing::Span::current()));
        }
        context.health().running();
        while let Some(ended) = loops.join_next().await {
            ended?;
        }
        Ok(())
    }
}

/// How long to wait before trying `LISTEN` again after it failed.
const LISTEN_RETRY: Duration = Duration::from_secs(30);

/// The dispatch loop of one database.
#[derive(Clone)]
struct DatabaseOutbox {
    bus: EventBus,
    /// The index of the database.
    index: usize,
    database: DatabaseId,
    connection: DatabaseConnection,
    wake: Arc<Notify>,
    options: Arc<DispatcherOptions>,
    context: WorkerContext,
    holder: String,
    /// Where deliveries that ended leave their message to be marked done.
    finished: mpsc::UnboundedSender<Finished>,
}

/// A delivery that ended without marking its message done, and who waits for the
/// message to be.
struct Finished {
    message: Claimed,
    recorded: oneshot::Sender<Result<(), sea_orm::DbErr>>,
}

/// Finished deliveries marked done in one transaction, at most.
const COMPLETIONS_PER_TRANSACTION: usize = 64;

/// How one delivery ended.
enum Delivered {
    /// Handled; `completed` if the message was marked done with the effect.
    Handled {
        completed: bool,
    },
    /// The inbox showed an earlier delivery's effect committed.
    AlreadyHandled,
    Failed {
        error: String,
        permanent: bool,
    },
}

impl DatabaseOutbox {
    fn new(
        bus: &EventBus,
        database: usize,
        options: &Arc<DispatcherOptions>,
        context: &WorkerContext,
    ) -> (Self, mpsc::UnboundedReceiver<Finished>) {
        let (id, connection) = bus.databases().database(database);
        let (finished, finishes) = mpsc::unbounded_channel();
        let outbox = Self {
            bus: bus.clone(),
            index: database,
            database: id.clone(),
            connection: connection.clone(),
            wake: Arc::clone(bus.pipelines.outbox().wake(database)),
            options: Arc::clone(options),
            context: context.clone(),
            holder: bus.databases().holder(),
            finished,
        };
        (outbox, finishes)
    }

    fn clock(&self) -> &Clock {
        self.context.clock()
    }

    /// Claims and delivers until shutdown, then lets the claimed deliveries end;
    /// `finished` receives the deliveries that leave their message to be marked done.
    async fn run(self, finished: mpsc::UnboundedReceiver<Finished>) {
        let completer = tokio::spawn(
            mark_done(
                self.connection.clone(),
                self.holder.clone(),
                self.clock().clone(),
                finished,
            )
            .in_current_span(),
        );
        let shutdown = self.context.shutdown().clone();
        let mut listener = None;
        let mut next_listen = self.clock().now();
        let mut next_prune = self.clock().now();
        let mut next_lag = self.clock().now();
        let mut failures: u32 = 0;
        let mut deliveries = JoinSet::new();
        while !shutdown.is_cancelled() {
            let now = self.clock().now();
            if listener.is_none() && now >= next_listen {
                next_listen = now + LISTEN_RETRY;
                listener = self.listen().await;
            }
            if now >= next_lag {
                next_lag = now + self.options.poll_interval;
                self.report_lag(now).await;
            }
            if now >= next_prune {
                next_prune = now + self.options.prune_interval;
                self.prune(now).await;
            }
            // Claim when at least half the delivery slots are free (one claim per
            // delivery would cost a transaction each), only as many as are free: every
            // claimed message starts at once, so no claim lapses while its messages
            // wait here.
            let free = self.options.concurrency - deliveries.len();
            let wake_at = if free * 2 < self.options.concurrency.max(2) && !deliveries.is_empty() {
                now + self.options.poll_interval
            } else {
                let wanted =
                    free.min(usize::try_from(self.options.batch_size).unwrap_or(usize::MAX));
                match self.claim(now, wanted).await {
                    Ok(claimed) => {
                        failures = 0;
                        let (full, none) = (claimed.len() == wanted, claimed.is_empty());
                        for message in claimed {
                            deliveries.spawn(self.clone().deliver(message).in_current_span());
                        }
                        if full {
                            // More may be due.
                            continue;
                        }
                        if none {
                            self.next_due(now).await
                        } else {
                            // The deliveries' ends wake the loop to claim again.
                            now + self.options.poll_interval
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        metrics::counter!("switchyard_outbox_errors_total", "database" => self.database.to_string())
                            .increment(1);
                        tracing::warn!(database = %self.database, error = %err, "outbox dispatch failed; retrying");
                        now + self.options.poll_interval.saturating_mul(failures.min(30))
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                // A slot is free, and the next message of its key may be due.
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
                () = self.wake.notified() => {}
                woke = notification(&mut listener) => {
                    if let Err(err) = woke {
                        tracing::warn!(database = %self.database, error = %err, "outbox LISTEN connection lost; polling until it is back");
                        listener = None;
                    }
                }
                () = self.clock().sleep_until(wake_at) => {}
            }
        }
        // Deliveries, once claimed, run to the end; the completer ends with the last
        // of them.
        while deliveries.join_next().await.is_some() {}
        drop(self);
        if let Err(err) = completer.await {
            tracing::error!(error = %err, "the outbox completer panicked");
        }
    }

    /// A `LISTEN` on the outbox channel, on PostgreSQL when enabled.
    async fn listen(&self) -> Option<PgListener> {
        if !self.options.listen
            || self.connection.get_database_backend() != DatabaseBackend::Postgres
        {
            return None;
        }
        let pool = self.connection.get_postgres_connection_pool();
        let result = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(store::CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match result {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(database = %self.database, error = %err, "cannot LISTEN for outbox messages; polling, and trying again in 30 s");
                None
            }
        }
    }

    /// Sets the lag gauge: how long the oldest pending message has waited.
    async fn report_lag(&self, now: DateTime<Utc>) {
        match store::oldest_pending(&self.connection).await {
            Ok(oldest) => {
                let lag = oldest.map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0));
                metrics::gauge!("switchyard_outbox_lag_seconds", "database" => self.database.to_string())
                    .set(lag);
            }
            Err(err) => {
                tracing::warn!(database = %self.database, error = %err, "reading the outbox lag failed");
            }
        }
    }

    /// Deletes delivered messages and inbox records older than the retention, and
    /// gives a head to any key with pending messages that lacks one (written by a
    /// version of switchyard before heads, during a rolling upgrade).
    async fn prune(&self, now: DateTime<Utc>) {
        match store::prune(&self.connection, now - self.options.retention).await {
            Ok((0, 0)) => {}
            Ok((messages, inbox)) => {
                tracing::info!(database = %self.database, messages, inbox, "pruned the outbox");
            }
            Err(err) => {
                tracing::warn!(database = %self.database, error = %err, "pruning the outbox failed");
            }
        }
        let restored = async {
            // In a write transaction, for its isolation (see `begin_write`).
            let tx = crate::sql::begin_write(&self.connection).await?;
            let keys = store::restore_heads(&tx, false).await?;
            tx.commit().await?;
            Ok::<_, sea_orm::DbErr>(keys)
        };
        match restored.await {
            Ok(0) => {}
            Ok(keys) => {
                tracing::warn!(database = %self.database, keys, "pending outbox messages had no head; gave them heads");
            }
            Err(err) => {
                tracing::warn!(database = %self.database, error = %err, "checking the outbox heads failed");
            }
        }
    }

    /// Claims up to `wanted` due messages for the subscribers registered here. A claim
    /// is given up at shutdown (its transaction rolls back, nothing is claimed).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        wanted: usize,
    ) -> Result<Vec<Claimed>, sea_orm::DbErr> {
        let subscribers = self.bus.subscribers();
        if subscribers.is_empty() || wanted == 0 {
            return Ok(Vec::new());
        }
        let claim = store::claim(
            &self.connection,
            &self.holder,
            &subscribers,
            now,
            self.options.lease,
            u64::try_from(wanted).unwrap_or(u64::MAX),
        );
        tokio::select! {
            claimed = claim => claimed,
            () = self.context.shutdown().cancelled() => Ok(Vec::new()),
        }
    }

    /// When to look again with nothing due now: when a retry delay or claim ends, or
    /// at the next poll.
    async fn next_due(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let poll = now + self.options.poll_interval;
        match store::next_due_after(&self.connection, now).await {
            Ok(Some(due)) => due.min(poll),
            Ok(None) => poll,
            Err(err) => {
                tracing::warn!(database = %self.database, error = %err, "reading the outbox failed");
                poll
            }
        }
    }

    /// Delivers one claimed message and records the outcome.
    async fn deliver(self, message: Claimed) {
        let bus = self.bus.clone();
        let timeout = self.options.handler_timeout;
        let delivering = message.clone();
        let (index, holder) = (self.index, self.holder.clone());
        // Its own task, so that a panicking handler fails its delivery only.
        let delivered =
            match tokio::spawn(
                async move { deliver(&bus, &delivering, index, holder, timeout).await },
            )
            .await
            {
                Ok(delivered) => delivered,
                Err(err) => Delivered::Failed {
                    error: format!("the handler panicked: {err}"),
                    permanent: false,
                },
            };
        if let Err(err) = self.record(&message, delivered).await {
            // The claim expires and the message is delivered again; the inbox keeps its
            // effect from repeating.
            tracing::warn!(database = %self.database, error = %err, "recording an outbox delivery failed");
        }
    }

    /// Records how the delivery of `message` ended.
    async fn record(&self, message: &Claimed, delivered: Delivered) -> Result<(), sea_orm::DbErr> {
        let now = self.clock().now();
        let subscriber = message.subscriber.clone();
        match delivered {
            Delivered::Handled { completed } => {
                metrics::counter!("switchyard_outbox_delivered_total", "subscriber" => subscriber)
                    .increment(1);
                if completed {
                    return Ok(());
                }
            }
            Delivered::AlreadyHandled => {
                metrics::counter!("switchyard_outbox_duplicates_total", "subscriber" => subscriber)
                    .increment(1);
            }
            Delivered::Failed { error, permanent } => {
                return self.record_failure(message, &error, permanent, now).await;
            }
        }
        // With the other deliveries that end meanwhile, in one transaction.
        let (recorded, done) = oneshot::channel();
        let finished = Finished {
            message: message.clone(),
            recorded,
        };
        match self.finished.send(finished) {
            Ok(()) => done.await.unwrap_or_else(|_| {
                Err(sea_orm::DbErr::Custom(
                    "the outbox completer ended before recording a delivery".to_owned(),
                ))
            }),
            Err(_) => complete(&self.connection, &self.holder, &[message], now).await,
        }
    }

    async fn record_failure(
        &self,
        message: &Claimed,
        error: &str,
        permanent: bool,
        now: DateTime<Utc>,
    ) -> Result<(), sea_orm::DbErr> {
        let attempts = message.attempts + 1;
        let subscriber = message.subscriber.clone();
        let next = if permanent || attempts >= self.options.max_attempts {
            AfterFailure::Dead
        } else {
            AfterFailure::RetryAt(now + self.options.backoff.jittered(attempts))
        };
        match next {
            AfterFailure::Dead => {
                metrics::counter!("switchyard_outbox_dead_total", "subscriber" => subscriber)
                    .increment(1);
                tracing::error!(
                    subscriber = %message.subscriber,
                    event_type = %message.envelope.event_type,
                    event_id = %message.envelope.event_id,
                    attempts,
                    error,
                    "outbox message is dead; replay it with `switchyard outbox replay` once mended"
                );
            }
            AfterFailure::RetryAt(at) => {
                metrics::counter!("switchyard_outbox_failed_total", "subscriber" => subscriber)
                    .increment(1);
                tracing::warn!(
                    subscriber = %message.subscriber,
                    event_type = %message.envelope.event_type,
                    event_id = %message.envelope.event_id,
                    attempts,
                    retry_at = %at,
                    error,
                    "outbox delivery failed; retrying"
                );
            }
        }
        let tx = crate::sql::begin_write(&self.connection).await?;
        store::fail(&tx, &self.holder, message.key(), attempts, error, next, now).await?;
        tx.commit().await
    }
}

/// Marks the messages of finished deliveries done and moves their keys' heads on,
/// until every sender is gone. The deliveries that end while one transaction commits
/// share the next: one commit for many, with no wait when deliveries are few.
async fn mark_done(
    connection: DatabaseConnection,
    holder: String,
    clock: Clock,
    mut finished: mpsc::UnboundedReceiver<Finished>,
) {
    let mut batch = Vec::with_capacity(COMPLETIONS_PER_TRANSACTION);
    while finished
        .recv_many(&mut batch, COMPLETIONS_PER_TRANSACTION)
        .await
        > 0
    {
        let now = clock.now();
        let messages: Vec<&Claimed> = batch.iter().map(|f| &f.message).collect();
        match complete(&connection, &holder, &messages, now).await {
            Ok(()) => {
                for finished in batch.drain(..) {
                    _ = finished.recorded.send(Ok(()));
                }
            }
            Err(_) if batch.len() > 1 => {
                // One at a time, so that what failed (a deadlock, say) fails alone.
                for finished in batch.drain(..) {
                    let one = [&finished.message];
                    _ = finished
                        .recorded
                        .send(complete(&connection, &holder, &one, now).await);
                }
            }
            Err(err) => {
                if let Some(finished) = batch.pop() {
                    _ = finished.recorded.send(Err(err));
                }
            }
        }
    }
}

/// Marks `messages` done and moves their keys' heads on, in one transaction. In key
/// order, the order in which emitters lock heads, so that the two never wait on
/// each other in a cycle.
async fn complete(
    connection: &DatabaseConnection,
    holder: &str,
    messages: &[&Claimed],
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let mut keys: Vec<_> = messages.iter().map(|message| message.key()).collect();
    keys.sort_by(|a, b| (a.subscriber, a.ordering_key).cmp(&(b.subscriber, b.ordering_key)));
    let tx = crate::sql::begin_write(connection).await?;
    for key in keys {
        store::complete(&tx, holder, key, now).await?;
    }
    tx.commit().await
}

/// The next notification, or never without a listener.
async fn notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await.map(drop),
        None => std::future::pending().await,
    }
}

/// Runs the subscriber's handler for one message in a unit of work of its own.
async fn deliver(
    bus: &EventBus,
    message: &Claimed,
    database: usize,
    holder: String,
    timeout: Duration,
) -> Delivered {
    let envelope = &message.envelope;
    let Some(subscription) = bus.routes.subscription(&message.subscriber) else {
        return Delivered::Failed {
            error: format!(
                "no subscriber named `{}` is registered on this instance",
                message.subscriber
            ),
            permanent: false,
        };
    };
    let span = tracing::info_span!(
        "deliver",
        subscriber = subscription.name,
        event_type = %envelope.event_type,
        event_id = %envelope.event_id,
        attempt = envelope.attempt,
        trace_parent = envelope.trace_parent.as_deref().unwrap_or_default(),
    );
    let started = Instant::now();
    let delivery = Delivery::new(
        subscription.name,
        envelope,
        database,
        message.id.clone(),
        holder,
        bus.databases().clock().clone(),
    );
    let run = bus
        .pipelines
        .pipeline(subscription.name)
        .run_delivery(delivery, async |uow| {
            subscription.handler.handle(envelope, uow).await
        });
    let result = tokio::time::timeout(timeout, run).instrument(span).await;
    metrics::histogram!("switchyard_outbox_handling_seconds", "subscriber" => subscription.name)
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok((Ok(_), delivery)) => Delivered::Handled {
            completed: delivery.completed,
        },
        Ok((Err(_), delivery)) if delivery.already_handled => Delivered::AlreadyHandled,
        Ok((Err(err), _)) => Delivered::Failed {
            permanent: err.is_permanent(),
            error: err.to_string(),
        },
        Err(_) => Delivered::Failed {
            error: format!("the handler did not finish within {timeout:?}"),
            permanent: false,
        },
    }
}
