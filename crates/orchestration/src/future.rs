//! The boxed future that the crate's dyn-compatible faces of its async traits return
//! (a boundary's migrator, a worker, an event handler, a saga and its steps): the one
//! shape of type erasure, boxed only where a trait object needs it.

use std::pin::Pin;

/// A boxed, sendable future borrowing for `'a`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
