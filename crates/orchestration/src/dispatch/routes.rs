//! The subscribers registered on an event bus: each subscriber's handler, with its
//! payload type erased behind JSON.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;

use super::{Handler, HandlerError};
use crate::outbox::Envelope;
use crate::unit_of_work::UnitOfWork;

use crate::future::BoxFuture;

/// A handler whose payload type is hidden behind JSON.
pub(super) trait ErasedHandler: Send + Sync {
    fn handle<'a>(
        &'a self,
        envelope: &'a Envelope,
        uow: &'a mut UnitOfWork<HandlerError>,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

struct Typed<T, H> {
    handler: H,
    _payload: PhantomData<fn() -> T>,
}

impl<T, H> ErasedHandler for Typed<T, H>
where
    T: DeserializeOwned + Send + 'static,
    H: Handler<T>,
{
    fn handle<'a>(
        &'a self,
        envelope: &'a Envelope,
        uow: &'a mut UnitOfWork<HandlerError>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event: T = serde_json::from_str(&envelope.payload).map_err(|err| {
                HandlerError::permanent(format!(
                    "the payload of {} {} does not parse: {err}",
                    envelope.event_type, envelope.event_id
                ))
            })?;
            self.handler.handle(event, envelope, uow).await
        })
    }
}

/// A registered subscriber.
#[derive(Clone)]
pub(super) struct Subscription {
    pub(super) name: &'static str,
    pub(super) handler: Arc<dyn ErasedHandler>,
}

/// Every subscriber's handler, by name. Cheap to clone; clones share the table.
#[derive(Clone, Default)]
pub(super) struct Routes {
    by_name: Arc<RwLock<HashMap<&'static str, Subscription>>>,
}

impl Routes {
    /// Adds `subscriber`; `false` if the name is taken.
    pub(super) fn add<T, H>(&self, subscriber: &'static str, handler: H) -> bool
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        let mut by_name = self
            .by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if by_name.contains_key(subscriber) {
            return false;
        }
        let handler = Arc::new(Typed {
            handler,
            _payload: PhantomData,
        });
        by_name.insert(
            subscriber,
            Subscription {
                name: subscriber,
                handler,
            },
        );
        true
    }

    pub(super) fn subscription(&self, name: &str) -> Option<Subscription> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every subscriber's name, sorted.
    pub(super) fn names(&self) -> Vec<&'static str> {
        let by_name = self
            .by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut names: Vec<_> = by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("subscribers", &self.names())
            .finish()
    }
}
