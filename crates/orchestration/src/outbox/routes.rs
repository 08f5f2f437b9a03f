//! The subscribers registered on a fabric: which subscribers receive each event type,
//! and each subscriber's handler with its payload type erased.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{Envelope, EventType, Handler, HandlerError};
use crate::unit_of_work::UnitOfWork;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A handler whose payload type is hidden behind JSON.
pub(crate) trait ErasedHandler: Send + Sync {
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
pub(crate) struct Subscription {
    pub(crate) name: &'static str,
    pub(crate) handler: Arc<dyn ErasedHandler>,
}

/// Every subscriber, by name and by event type.
#[derive(Default)]
pub(crate) struct Routes {
    by_name: HashMap<&'static str, Subscription>,
    by_type: HashMap<&'static str, Vec<&'static str>>,
}

impl Routes {
    /// Adds `subscriber` for `event_type`; `false` if the name is taken.
    pub(crate) fn add<T, H>(
        &mut self,
        event_type: EventType<T>,
        subscriber: &'static str,
        handler: H,
    ) -> bool
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        if self.by_name.contains_key(subscriber) {
            return false;
        }
        let handler = Arc::new(Typed {
            handler,
            _payload: PhantomData,
        });
        self.by_name.insert(
            subscriber,
            Subscription {
                name: subscriber,
                handler,
            },
        );
        self.by_type
            .entry(event_type.name())
            .or_default()
            .push(subscriber);
        true
    }

    /// The subscribers of `event_type`, in registration order.
    pub(crate) fn subscribers_of(&self, event_type: &str) -> &[&'static str] {
        self.by_type.get(event_type).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn subscription(&self, name: &str) -> Option<Subscription> {
        self.by_name.get(name).cloned()
    }

    /// Every subscriber's name, sorted.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("by_type", &self.by_type)
            .finish_non_exhaustive()
    }
}
