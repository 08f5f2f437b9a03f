//! The event types the workflows emit and subscribe to, and the registration of every
//! workflow subscriber on a fabric.

use orchestration::{Fabric, FabricError, outbox::EventType};
use orders::OrderPlaced;

use crate::LOGIN_ATTEMPTED;
use crate::audit_trail::{AuditLoginAttempt, AuditOrderPlaced};
use crate::notify::NotifyOrderConfirmed;

/// An order was placed (published by `orders`).
pub const ORDER_PLACED: EventType<OrderPlaced> = EventType::new(OrderPlaced::NAME);

/// The subscribers of [`ORDER_PLACED`]: each placed order has one outbox message for
/// each.
pub const ORDER_PLACED_SUBSCRIBERS: [&str; 2] =
    [AuditOrderPlaced::NAME, NotifyOrderConfirmed::NAME];

/// Subscribes every workflow subscriber to its events on `fabric`. Call it once, when
/// composing the application, before any unit of work emits.
///
/// # Errors
/// A subscriber is already registered under the same name.
pub fn subscribe(fabric: &Fabric) -> Result<(), FabricError> {
    let events = fabric.events();
    events.subscribe(ORDER_PLACED, AuditOrderPlaced::NAME, AuditOrderPlaced)?;
    events.subscribe(
        ORDER_PLACED,
        NotifyOrderConfirmed::NAME,
        NotifyOrderConfirmed,
    )?;
    events.subscribe(LOGIN_ATTEMPTED, AuditLoginAttempt::NAME, AuditLoginAttempt)
}
