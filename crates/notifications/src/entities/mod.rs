//! SeaORM entities of schema `notifications`, private to this crate.

pub(crate) mod delivery_attempts;
pub(crate) mod notifications;
