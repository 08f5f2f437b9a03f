//! Cross-module use cases built on orchestration. Each workflow fetches, lets the
//! domain decide, acts and persists; business rules stay in the domain crates.
//!
//! Workflows return business outcomes as values (`PlaceOrderOutcome::Refused`) and
//! infrastructure or contract failures as errors.

mod audit_trail;
mod events;
mod expired_holds;
mod login;
mod notify;
mod place_order;
#[cfg(doctest)]
mod readme;
mod refund_order;
mod registration;

pub use audit_trail::{AuditLoginAttempt, AuditOrderPlaced, AuditOrderRefunded};
pub use events::{
    ORDER_PLACED, ORDER_PLACED_SUBSCRIBERS, ORDER_REFUNDED, ORDER_REFUNDED_SUBSCRIBERS, subscribe,
};
pub use expired_holds::ReleaseExpiredHolds;
pub use login::{
    LOGIN_ATTEMPTED, Login, LoginError, LoginOutcome, LoginSettings, PasswordStep, TotpStep,
};
pub use notify::{DeliverNotifications, DeliveryPolicy, NotifyOrderConfirmed, NotifyOrderRefunded};
pub use place_order::{
    MAX_PLACEMENT_KEY_LEN, PlaceOrder, PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome,
    PlaceOrderSettings, Placement, Refusal,
};
pub use refund_order::{
    OrderRefund, RefundOrder, RefundOrderCommand, RefundOrderError, RefundOrderOutcome,
    RefundOrderSettings, RefundRefusal, RefundRun, Requester,
};
pub use registration::{
    ACCOUNT_REGISTERED, ACCOUNT_VERIFIED, ExpireRegistrations, MailSettings, Registering,
    Registration, RegistrationError, RegistrationOutcome, RegistrationSettings, SendVerification,
    SendWelcome, VerificationOutcome,
};
