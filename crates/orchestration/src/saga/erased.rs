//! Saga steps with their output types hidden behind JSON, so that one saga's steps of
//! different output types sit in one list and their outputs can be checkpointed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{BoxFuture, ExternalStep, IdempotencyKey, LocalStep, SagaContext, StepError};
use crate::unit_of_work::UnitOfWork;

/// A local step with its output type hidden behind JSON.
pub(crate) trait ErasedLocal<I>: Send + Sync {
    fn boundaries(&self) -> &'static [&'static str];

    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<Value, StepError>>;

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        output: Value,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

/// An external step with its output type hidden behind JSON.
pub(crate) trait ErasedExternal<I>: Send + Sync {
    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Value, StepError>>;

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
        output: Option<Value>,
    ) -> BoxFuture<'a, Result<(), StepError>>;
}

pub(crate) struct Local<S>(pub(crate) S);
pub(crate) struct External<S>(pub(crate) S);

fn to_json<T: Serialize>(output: &T) -> Result<Value, StepError> {
    serde_json::to_value(output)
        .map_err(|err| StepError::permanent(format!("the step's output does not serialise: {err}")))
}

fn from_json<T: DeserializeOwned>(output: Value) -> Result<T, StepError> {
    serde_json::from_value(output).map_err(|err| {
        StepError::permanent(format!(
            "the step's checkpointed output does not parse: {err}"
        ))
    })
}

impl<I: Sync, S: LocalStep<I>> ErasedLocal<I> for Local<S> {
    fn boundaries(&self) -> &'static [&'static str] {
        S::BOUNDARIES
    }

    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move { to_json(&self.0.act(run, uow).await?) })
    }

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        output: Value,
        uow: &'a mut UnitOfWork<StepError>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { self.0.compensate(run, from_json(output)?, uow).await })
    }
}

impl<I: Sync, S: ExternalStep<I>> ErasedExternal<I> for External<S> {
    fn act<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move { to_json(&self.0.act(run, key).await?) })
    }

    fn compensate<'a>(
        &'a self,
        run: &'a SagaContext<'a, I>,
        key: &'a IdempotencyKey,
        output: Option<Value>,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let output = output.map(from_json).transpose()?;
            self.0.compensate(run, key, output).await
        })
    }
}
