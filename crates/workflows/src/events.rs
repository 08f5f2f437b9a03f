//! The event types the workflows emit and subscribe to, and the registration of every
//! workflow subscriber on a fabric.

use orchestration::{Fabric, FabricError, outbox::EventType};
use orders::OrderPlaced;

use crate::LOGIN_ATTEMPTED;
use crate::audit_trail::{AuditLoginAttempt, AuditOrderPlaced};

/// An order was placed (published by `orders`).
pub const ORDER_PLACED: EventType<OrderPlaced> = EventType::new(OrderPlaced::NAME);

/// Subscribes every workflow subscriber to its events on `fabric`. Call it once, when
/// composing the application, before any unit of work emits.
///
/// # Errors
/// A subscriber is already registered under the same name.
pub fn subscribe(fabric: &Fabric) -> Result<(), FabricError> {
    let events = fabric.events();
    events.subscribe(ORDER_PLACED, AuditOrderPlaced::NAME, AuditOrderPlaced)?;
    events.subscribe(LOGIN_ATTEMPTED, AuditLoginAttempt::NAME, AuditLoginAttempt)
}
