//! SeaORM entities of schema `inventory`, private to this crate.

pub(crate) mod feed_imports;
pub(crate) mod feed_rejects;
pub(crate) mod products;
pub(crate) mod reservations;
pub(crate) mod stock_levels;
