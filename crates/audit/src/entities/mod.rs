//! SeaORM entities of schema `audit`, private to this crate.

pub(crate) mod entries;
