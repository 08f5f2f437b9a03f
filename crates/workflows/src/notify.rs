//! Notifications from the workflows: subscribers that queue a notification for a
//! business event (in the unit of work that records the event's delivery, so a
//! redelivered event queues nothing twice), and the job that delivers queued
//! notifications through the [`Sender`] port. A delivery failure never reaches the
//! workflow that caused the notification: it is retried with backoff, then dead.

use std::sync::Arc;
use std::time::Duration;

use notifications::{Attempt, Message, NewNotification, Recipient, Sender};
use orchestration::{
    Fabric, UnitOfWork, UnitOfWorkError,
    dispatch::{Handler, HandlerError},
    host::{Job, Tick, WorkerContext, WorkerError},
    outbox::Envelope,
};
use orders::{OrderPlaced, OrderRefunded};
use serde_json::json;
use uuid::Uuid;

/// An amount in minor units as text with two decimals (`3000` → `30.00`).
fn amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

/// Queues `order_confirmed` to the customer of a placed order, when the customer is an
/// account (its email is the recipient).
#[derive(Debug, Clone, Copy)]
pub struct NotifyOrderConfirmed;

impl NotifyOrderConfirmed {
    /// The subscriber's name.
    pub const NAME: &'static str = "notify_order_confirmed";
}

impl Handler<OrderPlaced> for NotifyOrderConfirmed {
    async fn handle(
        &self,
        event: OrderPlaced,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let data = json!({
            "order_id": event.order_id,
            "currency": event.currency,
            "total": amount(event.total_minor),
            "lines": event.lines.iter()
                .map(|line| json!({"sku": line.sku, "quantity": line.quantity}))
                .collect::<Vec<_>>(),
        });
        notify_customer(uow, envelope, &event.customer_id, "order_confirmed", data).await
    }
}

/// Queues `order_refunded` to the customer of a refunded order, when the customer is an
/// account.
#[derive(Debug, Clone, Copy)]
pub struct NotifyOrderRefunded;

impl NotifyOrderRefunded {
    /// The subscriber's name.
    pub const NAME: &'static str = "notify_order_refunded";
}

impl Handler<OrderRefunded> for NotifyOrderRefunded {
    async fn handle(
        &self,
        event: OrderRefunded,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let data = json!({
            "order_id": event.order_id,
            "currency": event.currency,
            "amount": amount(event.amount_minor),
            "fully_refunded": event.fully_refunded,
            "lines": event.lines.iter()
                .map(|line| json!({"sku": line.sku, "quantity": line.quantity}))
                .collect::<Vec<_>>(),
        });
        notify_customer(uow, envelope, &event.customer_id, "order_refunded", data).await
    }
}

/// Queues `template` with `data` to `customer_id`'s email, caused by `envelope`'s
/// event. A customer that is not an account (an id given by another system) has no
/// address to notify: nothing is queued.
async fn notify_customer(
    uow: &mut UnitOfWork<HandlerError>,
    envelope: &Envelope,
    customer_id: &str,
    template: &str,
    data: serde_json::Value,
) -> Result<(), HandlerError> {
    let Ok(account) = Uuid::parse_str(customer_id) else {
        return Ok(());
    };
    let account = uow
        .step(identity::SCHEMA, "find_customer", async |tx| {
            identity::get_account(tx, identity::AccountId(account)).await
        })
        .await?;
    let Some(account) = account else {
        return Ok(());
    };
    let notification = NewNotification {
        cause: envelope.event_id.to_string(),
        recipient: Recipient::parse(account.email.as_str()).map_err(HandlerError::permanent)?,
        template: template.to_owned(),
        data,
    };
    let now = envelope.occurred_at;
    uow.step(notifications::SCHEMA, "queue_notification", async |tx| {
        notifications::enqueue(tx, &notification, now).await
    })
    .await?;
    Ok(())
}

/// How notifications are delivered and retried.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Notifications taken per tick.
    pub batch: u64,
    /// How long one attempt may take (the claim lasts as long): past it, the attempt
    /// counts as failed, and another deliverer may take the notification.
    pub attempt_timeout: Duration,
    /// The wait before the second attempt; it doubles with each failure.
    pub backoff_initial: Duration,
    /// The longest wait between attempts.
    pub backoff_max: Duration,
    /// Attempts before a notification is dead.
    pub max_attempts: u32,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            batch: 50,
            attempt_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(15 * 60),
            max_attempts: 8,
        }
    }
}

impl DeliveryPolicy {
    /// The wait after failed attempt `attempt` (from 1).
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

/// Delivers due notifications through a [`Sender`]: claims each (one deliverer at a
/// time across instances), renders it, sends it and records the attempt.
#[derive(Debug, Clone)]
pub struct DeliverNotifications {
    fabric: Fabric,
    sender: Arc<dyn Sender>,
    policy: DeliveryPolicy,
}

impl DeliverNotifications {
    /// The job's name.
    pub const NAME: &'static str = "deliver_notifications";

    /// The job delivering through `sender` under `policy`, on `fabric`.
    #[must_use]
    pub fn new(fabric: &Fabric, sender: Arc<dyn Sender>, policy: DeliveryPolicy) -> Self {
        Self {
            fabric: fabric.clone(),
            sender,
            policy,
        }
    }

    /// One attempt at `notification`, claimed: how it ended.
    async fn attempt(&self, notification: &notifications::Notification, attempt: u32) -> Attempt {
        let failed = |error: String, retry: bool| {
            let retry_at = (retry && attempt < self.policy.max_attempts).then(|| {
                let wait = chrono::Duration::from_std(self.policy.backoff(attempt))
                    .unwrap_or(chrono::Duration::MAX);
                self.fabric.clock().now() + wait
            });
            Attempt::Failed { error, retry_at }
        };
        let rendered = match notifications::render(&notification.template, &notification.data) {
            Ok(rendered) => rendered,
            // The same data renders the same way on every attempt.
            Err(err) => return failed(err.to_string(), false),
        };
        let message = Message {
            id: notification.id,
            to: notification.recipient.clone(),
            subject: rendered.subject,
            body: rendered.body,
            created_at: notification.created_at,
        };
        match tokio::time::timeout(self.policy.attempt_timeout, self.sender.send(&message)).await {
            Ok(Ok(())) => Attempt::Sent,
            Ok(Err(err)) => failed(err.message, !err.permanent),
            Err(_) => failed(
                format!("no answer within {:?}", self.policy.attempt_timeout),
                true,
            ),
        }
    }
}

/// A delivery could not be recorded.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Notifications(#[from] notifications::Error),
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
}

impl Job for DeliverNotifications {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn run(&self, _tick: Tick, context: &WorkerContext) -> Result<(), WorkerError> {
        let conn = self.fabric.connection(notifications::SCHEMA)?;
        let now = context.clock().now();
        for notification in notifications::due(conn, now, self.policy.batch).await? {
            if context.shutdown().is_cancelled() {
                break;
            }
            let until = now
                + chrono::Duration::from_std(self.policy.attempt_timeout)
                    .unwrap_or(chrono::Duration::MAX);
            if !notifications::claim(conn, &notification, until).await? {
                continue;
            }
            let attempt = notification.attempts + 1;
            let outcome = self.attempt(&notification, attempt).await;
            if let Attempt::Failed { error, retry_at } = &outcome {
                tracing::warn!(
                    notification = %notification.id,
                    template = notification.template,
                    attempt,
                    error,
                    dead = retry_at.is_none(),
                    "a notification was not delivered"
                );
            }
            let at = context.clock().now();
            self.fabric
                .unit_of_work("record_delivery")
                .run(async |uow| {
                    uow.step(notifications::SCHEMA, "record_attempt", async |tx| {
                        notifications::record_attempt(tx, notification.id, attempt, &outcome, at)
                            .await
                    })
                    .await
                })
                .await
                .map_err(|err: DeliveryError| -> WorkerError { Box::new(err) })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_have_two_decimals() {
        assert_eq!(amount(3000), "30.00");
        assert_eq!(amount(5), "0.05");
        assert_eq!(amount(-1250), "-12.50");
    }

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let policy = DeliveryPolicy {
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            ..DeliveryPolicy::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    }
}
