//! The audit trail: subscribers that record an audit entry for business events. They
//! run after the event's unit of work committed, so an audit failure never changes or
//! delays the outcome that caused it; the outbox retries it instead.

use audit::{Action, Actor, NewEntry, Subject};
use identity::LoginAttempted;
use orchestration::{
    UnitOfWork,
    dispatch::{Handler, HandlerError},
    outbox::Envelope,
};
use orders::{OrderPlaced, OrderRefunded};

/// Records `order.placed` on subject `order:<id>`, by actor `customer:<id>`.
#[derive(Debug, Clone, Copy)]
pub struct AuditOrderPlaced;

impl AuditOrderPlaced {
    /// The subscriber's name.
    pub const NAME: &'static str = "audit_order_placed";
}

impl Handler<OrderPlaced> for AuditOrderPlaced {
    async fn handle(
        &self,
        event: OrderPlaced,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let entry = NewEntry {
            actor: Actor::parse(&format!("customer:{}", event.customer_id))
                .map_err(HandlerError::permanent)?,
            action: Action::parse("order.placed").map_err(HandlerError::permanent)?,
            subject: Subject::parse(&format!("order:{}", event.order_id))
                .map_err(HandlerError::permanent)?,
            occurred_at: event.placed_at,
            data: serde_json::json!({
                "event_id": envelope.event_id,
                "currency": event.currency,
                "total_minor": event.total_minor,
                "lines": event.lines,
            }),
        };
        uow.step(audit::SCHEMA, "record_entry", async |tx| {
            audit::record(tx, &entry).await
        })
        .await?;
        Ok(())
    }
}

/// Records `order.refunded` on subject `order:<id>`, by the actor who asked for the
/// refund (`customer:<id>`, or `account:<id>` of staff).
#[derive(Debug, Clone, Copy)]
pub struct AuditOrderRefunded;

impl AuditOrderRefunded {
    /// The subscriber's name.
    pub const NAME: &'static str = "audit_order_refunded";
}

impl Handler<OrderRefunded> for AuditOrderRefunded {
    async fn handle(
        &self,
        event: OrderRefunded,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let entry = NewEntry {
            actor: Actor::parse(&event.requested_by).map_err(HandlerError::permanent)?,
            action: Action::parse("order.refunded").map_err(HandlerError::permanent)?,
            subject: Subject::parse(&format!("order:{}", event.order_id))
                .map_err(HandlerError::permanent)?,
            occurred_at: event.refunded_at,
            data: serde_json::json!({
                "event_id": envelope.event_id,
                "refund_id": event.refund_id,
                "currency": event.currency,
                "amount_minor": event.amount_minor,
                "lines": event.lines,
                "fully_refunded": event.fully_refunded,
            }),
        };
        uow.step(audit::SCHEMA, "record_entry", async |tx| {
            audit::record(tx, &entry).await
        })
        .await?;
        Ok(())
    }
}

/// Records `login.<outcome>` on subject `account:<id>` (or `email:<address>` when no
/// account has it, or `client:<address>`), by actor `client:<address>`.
#[derive(Debug, Clone, Copy)]
pub struct AuditLoginAttempt;

impl AuditLoginAttempt {
    /// The subscriber's name.
    pub const NAME: &'static str = "audit_login_attempt";
}

impl Handler<LoginAttempted> for AuditLoginAttempt {
    async fn handle(
        &self,
        event: LoginAttempted,
        envelope: &Envelope,
        uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let subject = match (&event.account_id, &event.email) {
            (Some(id), _) => format!("account:{id}"),
            (None, Some(email)) => format!("email:{email}"),
            (None, None) => format!("client:{}", event.client),
        };
        let entry = NewEntry {
            actor: Actor::parse(&format!("client:{}", event.client))
                .map_err(HandlerError::permanent)?,
            action: Action::parse(&format!("login.{}", event.outcome))
                .map_err(HandlerError::permanent)?,
            subject: Subject::parse(&subject).map_err(HandlerError::permanent)?,
            occurred_at: event.attempted_at,
            data: serde_json::json!({ "event_id": envelope.event_id }),
        };
        uow.step(audit::SCHEMA, "record_entry", async |tx| {
            audit::record(tx, &entry).await
        })
        .await?;
        Ok(())
    }
}
