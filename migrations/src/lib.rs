//! SeaORM migrations, one module per boundary. Each boundary's migrator runs on a
//! connection scoped to its schema, so table names here are unqualified and each
//! boundary's history table (`seaql_migrations`) lives inside its own schema.
//!
//! A boundary is registered once, in the list at the end of this file: its module's
//! name is the boundary's name (and its schema's, and its domain crate's). The list
//! makes the module, a function of the same name returning its [`Boundary`], and
//! [`all`]. `cargo xtask new-module NAME` adds a module and its line.

mod columns;

use orchestration::Boundary;

/// Declares each boundary's migrations module and `fn NAME() -> Boundary`, and
/// [`all`] in the order listed.
macro_rules! boundaries {
    ($($name:ident),+ $(,)?) => {
        $(
            pub mod $name;

            #[doc = concat!("The `", stringify!($name), "` boundary (schema `", stringify!($name), "`).")]
            #[must_use]
            pub fn $name() -> Boundary {
                Boundary::new::<$name::Migrator>(stringify!($name))
            }
        )+

        /// Every boundary, in the order their migrations run. The fabric's own boundary
        /// (`orchestration`, whose migrations live in the orchestration crate) comes
        /// first. The app, the workflows' tests and the end-to-end tests all use this
        /// list.
        #[must_use]
        pub fn all() -> Vec<Boundary> {
            vec![orchestration::schema::boundary(), $($name()),+]
        }
    };
}

boundaries![
    inventory,
    orders,
    audit,
    payments,
    identity,
    notifications,
    // cargo xtask new-module: boundaries above this line.
];
