//! SeaORM entities of schema `orders`, private to this crate.

pub(crate) mod order_lines;
pub(crate) mod orders;
