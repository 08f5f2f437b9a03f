//! SeaORM entities of schema `{{name}}`, private to this crate.

pub(crate) mod items;
