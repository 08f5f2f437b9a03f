//! The event types the workflows emit and subscribe to, and the registration of every
//! workflow subscriber on a fabric.

use orchestration::{Fabric, FabricError, outbox::EventType};
use orders::{OrderPlaced, OrderRefunded};

use crate::LOGIN_ATTEMPTED;
use crate::audit_trail::{AuditLoginAttempt, AuditOrderPlaced, AuditOrderRefunded};
use crate::notify::{NotifyOrderConfirmed, NotifyOrderRefunded};
use crate::registration::{
    ACCOUNT_REGISTERED, ACCOUNT_VERIFIED, MailSettings, SendVerification, SendWelcome,
};

/// An order was placed (published by `orders`).
pub const ORDER_PLACED: EventType<OrderPlaced> = EventType::new(OrderPlaced::NAME);

/// The subscribers of [`ORDER_PLACED`]: each placed order has one outbox message for
/// each.
pub const ORDER_PLACED_SUBSCRIBERS: [&str; 2] =
    [AuditOrderPlaced::NAME, NotifyOrderConfirmed::NAME];

/// Units of an order were refunded (published by `orders`).
pub const ORDER_REFUNDED: EventType<OrderRefunded> = EventType::new(OrderRefunded::NAME);

/// The subscribers of [`ORDER_REFUNDED`].
pub const ORDER_REFUNDED_SUBSCRIBERS: [&str; 2] =
    [AuditOrderRefunded::NAME, NotifyOrderRefunded::NAME];

/// Subscribes every workflow subscriber to its events on `fabric`, the registration
/// mails saying what `mail` says. Call it once, when composing the application, before
/// any unit of work emits.
///
/// # Errors
/// A subscriber is already registered under the same name.
pub fn subscribe(fabric: &Fabric, mail: &MailSettings) -> Result<(), FabricError> {
    let events = fabric.events();
    events.subscribe(ORDER_PLACED, AuditOrderPlaced::NAME, AuditOrderPlaced)?;
    events.subscribe(
        ORDER_PLACED,
        NotifyOrderConfirmed::NAME,
        NotifyOrderConfirmed,
    )?;
    events.subscribe(ORDER_REFUNDED, AuditOrderRefunded::NAME, AuditOrderRefunded)?;
    events.subscribe(
        ORDER_REFUNDED,
        NotifyOrderRefunded::NAME,
        NotifyOrderRefunded,
    )?;
    events.subscribe(
        ACCOUNT_REGISTERED,
        SendVerification::NAME,
        SendVerification(mail.clone()),
    )?;
    events.subscribe(ACCOUNT_VERIFIED, SendWelcome::NAME, SendWelcome)?;
    events.subscribe(LOGIN_ATTEMPTED, AuditLoginAttempt::NAME, AuditLoginAttempt)
}
