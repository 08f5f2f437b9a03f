//! Refunds as a durable saga: record the refund intent (what the order allows, checked
//! by orders; what was paid, checked by payments) → refund through the gateway under
//! the intent's key → mark the order refunded or partly refunded (orders) and return
//! its units to stock (inventory) in one unit of work, and emit `OrderRefunded`. The
//! run's id is the refund's id.
//!
//! A refusal (nothing left to refund, more than was ordered or paid, the customer's
//! window closed, another refund of the order still open) changes nothing. A gateway
//! that refuses, or keeps failing until the retries run out, closes the intent as
//! `refused` or `failed` and leaves the order and its stock as they were: never half
//! applied.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use inventory::{Quantity, Sku};
use orchestration::{
    Fabric, FabricError, UnitOfWork,
    saga::{
        ExternalStep, IdempotencyKey, LocalStep, RetryPolicy, RunDetails, RunState, Saga,
        SagaContext, SagaError, SagaHandle, StepError, StepName,
    },
    sql::begin_write,
};
use orders::{
    CustomerId, Order, OrderRefunded, OrderStatus, RefundLine, RefundPlan, RefundRefused,
};
use payments::{GatewayError, PaymentGateway, RefundOutcome, RefundRequest, RefundStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::ORDER_REFUNDED;
use crate::place_order::{gateway_lease, scoped_key};

/// Who asks for a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// The order's customer: within the refund window of the order's placement.
    Customer(CustomerId),
    /// Staff (the account's id), at any time.
    Staff(String),
}

impl Requester {
    /// The audit actor: `customer:<id>` or `account:<id>`.
    fn actor(&self) -> String {
        match self {
            Self::Customer(id) => format!("customer:{}", id.as_str()),
            Self::Staff(id) => format!("account:{id}"),
        }
    }
}

/// What to refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrderCommand {
    /// The order.
    pub order_id: Uuid,
    /// The units to refund (a SKU may appear more than once), or `None` for every unit
    /// not refunded yet.
    pub lines: Option<Vec<(Sku, Quantity)>>,
    /// Who asks.
    pub requested_by: Requester,
}

/// The saga's input, as stored with its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Input {
    order_id: Uuid,
    lines: Option<Vec<InputLine>>,
    requested_by: String,
    /// Whether the customer's refund window applies.
    within_window: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InputLine {
    sku: String,
    quantity: u32,
}

impl From<&RefundOrderCommand> for Input {
    fn from(command: &RefundOrderCommand) -> Self {
        Self {
            order_id: command.order_id,
            lines: command.lines.as_ref().map(|lines| {
                lines
                    .iter()
                    .map(|(sku, quantity)| InputLine {
                        sku: sku.as_str().to_owned(),
                        quantity: quantity.get(),
                    })
                    .collect()
            }),
            requested_by: command.requested_by.actor(),
            within_window: matches!(command.requested_by, Requester::Customer(_)),
        }
    }
}

/// Why a refund was refused: the run's rejection, as stored. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefundRefusal {
    /// The order is not confirmed (pending, cancelled, or refunded already).
    NotRefundable {
        /// Its status.
        status: OrderStatus,
    },
    /// Every unit was refunded already.
    NothingToRefund,
    /// A SKU the order does not hold.
    NotInOrder {
        /// The SKU.
        sku: String,
    },
    /// More units of a SKU than are left to refund.
    MoreThanOrdered {
        /// The SKU.
        sku: String,
        /// Units asked for.
        requested: u32,
        /// Units that may still be refunded.
        refundable: u32,
    },
    /// More money than was paid and not refunded yet.
    MoreThanPaid {
        /// The amount asked for, in minor units.
        requested_minor: i64,
        /// What may still be refunded, in minor units.
        refundable_minor: i64,
    },
    /// The order has no charged payment.
    NothingPaid,
    /// Another refund of the order is still running.
    InProgress {
        /// That refund.
        refund_id: Uuid,
    },
    /// The customer's refund window has closed (staff with `orders.refund` may still
    /// refund).
    WindowClosed {
        /// When it closed.
        closed_at: DateTime<Utc>,
    },
}

impl From<RefundRefused> for RefundRefusal {
    fn from(refused: RefundRefused) -> Self {
        match refused {
            RefundRefused::NotRefundable { status } => Self::NotRefundable { status },
            RefundRefused::NothingToRefund => Self::NothingToRefund,
            RefundRefused::NotInOrder { sku } => Self::NotInOrder { sku },
            RefundRefused::MoreThanOrdered {
                sku,
                requested,
                refundable,
            } => Self::MoreThanOrdered {
                sku,
                requested,
                refundable,
            },
        }
    }
}

/// A refund that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRefund {
    /// The refund's id.
    pub id: Uuid,
    /// The amount given back, in minor units.
    pub amount_minor: i64,
    /// The units given back.
    pub lines: Vec<RefundLine>,
    /// The order, as it stands now.
    pub order: Order,
}

/// How a refund stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOrderOutcome {
    /// The money went back and the units to stock.
    Refunded(OrderRefund),
    /// Refused; nothing changed.
    Refused(RefundRefusal),
    /// Still running (the gateway is slow or retrying); ask again later.
    Pending,
    /// The gateway refused it or kept failing (the intent is `refused` or `failed`,
    /// the order unchanged), or it needs an operator (`state` is `failed`).
    Failed {
        /// The run's state.
        state: RunState,
        /// What went wrong.
        error: String,
    },
}

/// A refund run: its id, its order and how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRun {
    /// The refund's id (its saga run's).
    pub id: Uuid,
    /// The order refunded.
    pub order_id: Uuid,
    /// How it stands.
    pub outcome: RefundOrderOutcome,
}

/// A refund failed for a reason that is not a business outcome.
#[derive(Debug, thiserror::Error)]
pub enum RefundOrderError {
    /// The idempotency key was used before for a different refund of the order.
    #[error("idempotency key `{key}` was used for another refund ({refund})")]
    KeyReused {
        /// The key.
        key: String,
        /// The refund that holds it.
        refund: Uuid,
    },
    /// The saga could not start or be read.
    #[error(transparent)]
    Saga(SagaError),
    /// Orders failed.
    #[error(transparent)]
    Orders(#[from] orders::Error),
}

impl RefundOrderError {
    /// Whether a database could not be used right now: the same request may succeed
    /// later (with the same idempotency key, it cannot refund twice).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Saga(err) => err.is_unavailable(),
            Self::Orders(orders::Error::Database(err)) => {
                orchestration::failure::is_unavailable(err)
            }
            _ => false,
        }
    }
}

/// What refunding needs.
#[derive(Debug, Clone)]
pub struct RefundOrderSettings {
    /// The payment gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// How long after its placement a customer may refund their order.
    pub customer_window: chrono::Duration,
    /// How calls to the gateway are timed out and retried.
    pub retry: RetryPolicy,
}

/// Refunds orders. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RefundOrder {
    fabric: Fabric,
    saga: SagaHandle<Input>,
}

impl RefundOrder {
    /// The saga's name.
    pub const SAGA: &'static str = "refund_order";

    /// Registers the refund saga on `fabric`.
    ///
    /// # Errors
    /// The saga cannot run on the fabric's topology (a step's boundaries cannot
    /// commit with the run's checkpoint), or it is registered already.
    pub fn register(fabric: &Fabric, settings: RefundOrderSettings) -> Result<Self, FabricError> {
        let retry = settings.retry;
        let saga = Saga::new(Self::SAGA)
            .lease(gateway_lease(&retry))
            .local(
                RECORD_INTENT,
                RecordIntent {
                    window: settings.customer_window,
                },
            )
            .external(
                "refund",
                GatewayRefund {
                    fabric: fabric.clone(),
                    gateway: settings.gateway,
                },
            )
            .retry(retry)
            .local("apply_refund", ApplyRefund);
        Ok(Self {
            fabric: fabric.clone(),
            saga: fabric.sagas().register(saga)?,
        })
    }

    /// Refunds under idempotency `key` (a fresh one if `None`), which is scoped to the
    /// order (at most [`crate::MAX_PLACEMENT_KEY_LEN`] bytes), and waits up to `wait` for the
    /// outcome. A key used before for the same refund returns that refund and repeats
    /// nothing. Who may refund the order is the caller's to decide.
    ///
    /// # Errors
    /// [`RefundOrderError::KeyReused`] for a key used with a different refund, or an
    /// infrastructure failure; business refusals are [`RefundOrderOutcome`] values.
    pub async fn refund(
        &self,
        key: Option<&str>,
        command: &RefundOrderCommand,
        wait: Duration,
    ) -> Result<RefundRun, RefundOrderError> {
        let scoped =
            scoped_key(&command.order_id.to_string(), key).map_err(RefundOrderError::Saga)?;
        let run = match self.saga.start(&scoped, &Input::from(command), wait).await {
            Ok(run) => run,
            Err(SagaError::KeyConflict { run_id, .. }) => {
                return Err(RefundOrderError::KeyReused {
                    key: key.unwrap_or_default().to_owned(),
                    refund: run_id,
                });
            }
            Err(err) => return Err(RefundOrderError::Saga(err)),
        };
        self.refund_run(run).await
    }

    /// The refund with this id, as it stands; `None` if there is none.
    ///
    /// # Errors
    /// An infrastructure failure.
    pub async fn refund_of(&self, id: Uuid) -> Result<Option<RefundRun>, RefundOrderError> {
        match self.saga.run(id).await {
            Ok(run) if run.run.saga == Self::SAGA => self.refund_run(run).await.map(Some),
            Ok(_) | Err(SagaError::UnknownRun(_)) => Ok(None),
            Err(err) => Err(RefundOrderError::Saga(err)),
        }
    }

    async fn refund_run(&self, run: RunDetails) -> Result<RefundRun, RefundOrderError> {
        let id = run.run.id;
        let corrupt = |what: String| orders::Error::Corrupt(format!("refund {id}: {what}"));
        let input: Input = serde_json::from_value(run.input.clone())
            .map_err(|err| corrupt(format!("its input: {err}")))?;
        let failed = |run: &RunDetails| RefundOrderOutcome::Failed {
            state: run.run.state,
            error: run
                .run
                .last_error
                .clone()
                .unwrap_or_else(|| run.run.state.to_string()),
        };
        let outcome = match run.run.state {
            RunState::Running | RunState::Compensating => RefundOrderOutcome::Pending,
            RunState::Completed => {
                let intent: Intent = run
                    .steps
                    .iter()
                    .find(|step| step.name == RECORD_INTENT.name())
                    .and_then(|step| step.output.clone())
                    .map(serde_json::from_value)
                    .ok_or_else(|| corrupt("no intent".to_owned()))?
                    .map_err(|err| corrupt(format!("its intent: {err}")))?;
                let db = self
                    .fabric
                    .connection(orders::SCHEMA)
                    .map_err(|err| corrupt(err.to_string()))?;
                let order = orders::get(db, input.order_id)
                    .await?
                    .ok_or(orders::Error::UnknownOrder { id: input.order_id })?;
                RefundOrderOutcome::Refunded(OrderRefund {
                    id,
                    amount_minor: intent.plan.amount_minor,
                    lines: intent.plan.lines,
                    order,
                })
            }
            RunState::Compensated => match run
                .run
                .rejection
                .clone()
                .map(serde_json::from_value::<RefundRefusal>)
            {
                Some(Ok(refusal)) => RefundOrderOutcome::Refused(refusal),
                _ => failed(&run),
            },
            RunState::Failed | RunState::Cancelled => failed(&run),
        };
        Ok(RefundRun {
            id,
            order_id: input.order_id,
            outcome,
        })
    }
}

/// The first step, whose output the later steps read.
const RECORD_INTENT: StepName<Intent> = StepName::new("record_intent");

/// The refund as recorded: what it gives back, and the gateway's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    plan: RefundPlan,
    customer_id: String,
    currency: String,
    gateway_key: String,
    charge_key: String,
}

fn payments_error(err: payments::Error) -> StepError {
    match err {
        payments::Error::NothingPaid { .. } => StepError::reject(&RefundRefusal::NothingPaid),
        payments::Error::RefundInProgress { refund_id } => {
            StepError::reject(&RefundRefusal::InProgress { refund_id })
        }
        payments::Error::OverRefund {
            requested_minor,
            refundable_minor,
        } => StepError::reject(&RefundRefusal::MoreThanPaid {
            requested_minor,
            refundable_minor,
        }),
        payments::Error::Database(err) => StepError::classified(&err),
        other => StepError::permanent(other),
    }
}

fn orders_error(err: orders::Error) -> StepError {
    match err {
        orders::Error::Database(err) => StepError::classified(&err),
        other => StepError::permanent(other),
    }
}

fn inventory_error(err: inventory::Error) -> StepError {
    match err {
        inventory::Error::Database(err) => StepError::classified(&err),
        other => StepError::permanent(other),
    }
}

/// Step 1: decides what the refund gives back (orders: what is left of the order;
/// the customer's window) and records the intent against the payment (payments: one
/// open refund per payment, never more than was paid). Undone by closing the intent as
/// failed.
#[derive(Debug)]
struct RecordIntent {
    window: chrono::Duration,
}

impl LocalStep<Input> for RecordIntent {
    type Output = Intent;
    const BOUNDARIES: &'static [&'static str] = &[orders::SCHEMA, payments::SCHEMA];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<Intent, StepError> {
        let input = run.input();
        let now = run.now();
        let reference = input.order_id.to_string();
        // The payment first: a refund of the order still open refuses this one, and
        // one that ended has left the order as it is read next.
        uow.step(payments::SCHEMA, "lock_payment", async |tx| {
            payments::lock_for_refund(tx, &reference)
                .await
                .map_err(payments_error)
        })
        .await?;
        let order = uow
            .step(orders::SCHEMA, "find_order", async |tx| {
                orders::get(tx, input.order_id).await.map_err(orders_error)
            })
            .await?
            .ok_or_else(|| {
                StepError::permanent(orders::Error::UnknownOrder { id: input.order_id })
            })?;
        if input.within_window && now > order.created_at + self.window {
            return Err(StepError::reject(&RefundRefusal::WindowClosed {
                closed_at: order.created_at + self.window,
            }));
        }
        let asked: Option<Vec<(String, u32)>> = input.lines.as_ref().map(|lines| {
            lines
                .iter()
                .map(|line| (line.sku.clone(), line.quantity))
                .collect()
        });
        let plan = order
            .refund(asked.as_deref())
            .map_err(|refused| StepError::reject(&RefundRefusal::from(refused)))?;
        let intent = uow
            .step(payments::SCHEMA, "request_refund", async |tx| {
                payments::request_refund(tx, &reference, run.run_id(), plan.amount_minor, now)
                    .await
                    .map_err(payments_error)
            })
            .await?;
        Ok(Intent {
            plan,
            customer_id: order.customer_id,
            currency: order.currency,
            gateway_key: intent.gateway_key,
            charge_key: intent.charge_key,
        })
    }

    async fn compensate(
        &self,
        run: &SagaContext<'_, Input>,
        _intent: Intent,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<(), StepError> {
        let now = run.now();
        uow.step(payments::SCHEMA, "close_refund", async |tx| {
            let error = "given up before the gateway answered; it may have refunded (the next \
                         refund of this payment asks under the same key)";
            match payments::close_refund(tx, run.run_id(), RefundStatus::Failed, error, now).await {
                // Refused by the gateway already: that outcome stands.
                Ok(_) | Err(payments::Error::RefundClosed { .. }) => Ok(()),
                Err(err) => Err(payments_error(err)),
            }
        })
        .await
    }
}

/// Step 2: refunds through the gateway under the intent's key and records the answer.
/// A refused refund closes the intent as refused. A refund that went through cannot
/// be undone: its compensation leaves the run to an operator.
#[derive(Debug)]
struct GatewayRefund {
    fabric: Fabric,
    gateway: Arc<dyn PaymentGateway>,
}

/// The refund that went through.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Refunded {
    gateway_reference: String,
}

impl GatewayRefund {
    async fn close_refused(
        &self,
        run: &SagaContext<'_, Input>,
        reason: &str,
    ) -> Result<StepError, StepError> {
        let db = self
            .fabric
            .connection(payments::SCHEMA)
            .map_err(StepError::permanent)?;
        let tx = begin_write(db).await?;
        payments::close_refund(&tx, run.run_id(), RefundStatus::Refused, reason, run.now())
            .await
            .map_err(payments_error)?;
        tx.commit().await?;
        Ok(StepError::permanent(format!(
            "the gateway refused the refund: {reason}"
        )))
    }
}

impl ExternalStep<Input> for GatewayRefund {
    type Output = Refunded;

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        _key: &IdempotencyKey,
    ) -> Result<Refunded, StepError> {
        let intent: Intent = run.output(RECORD_INTENT)?;
        let request = RefundRequest {
            key: intent.gateway_key,
            charge_key: intent.charge_key.clone(),
            amount_minor: intent.plan.amount_minor,
        };
        match self.gateway.refund(&request).await {
            Ok(RefundOutcome::Refunded { reference }) => {
                let db = self
                    .fabric
                    .connection(payments::SCHEMA)
                    .map_err(StepError::permanent)?;
                let tx = begin_write(db).await?;
                payments::record_refunded(&tx, run.run_id(), &reference, run.now())
                    .await
                    .map_err(payments_error)?;
                tx.commit().await?;
                Ok(Refunded {
                    gateway_reference: reference,
                })
            }
            Ok(RefundOutcome::NothingCharged) => Err(self
                .close_refused(
                    run,
                    &format!("it holds no charge under {}", intent.charge_key),
                )
                .await?),
            Err(GatewayError::Refused(reason)) => Err(self.close_refused(run, &reason).await?),
            Err(GatewayError::Database(err)) => Err(StepError::classified(&err)),
            Err(err @ GatewayError::Unavailable(_)) => Err(StepError::transient(err)),
        }
    }

    async fn compensate(
        &self,
        _run: &SagaContext<'_, Input>,
        _key: &IdempotencyKey,
        refunded: Option<Refunded>,
    ) -> Result<(), StepError> {
        match refunded {
            // The gateway refused it, or never answered: the first step's compensation
            // closes the intent.
            None => Ok(()),
            Some(refunded) => Err(StepError::permanent(format!(
                "the gateway refunded it ({}) and a refund cannot be undone: an operator \
                 must settle the order",
                refunded.gateway_reference
            ))),
        }
    }
}

/// Step 3: records the refunded units on the order (refunded, or partly refunded),
/// returns them to stock, settles the intent (the payment may be refunded again), and
/// tells the subscribers. The last step: nothing after it can refuse, so it is never
/// undone.
#[derive(Debug)]
struct ApplyRefund;

impl LocalStep<Input> for ApplyRefund {
    type Output = Uuid;
    const BOUNDARIES: &'static [&'static str] =
        &[orders::SCHEMA, inventory::SCHEMA, payments::SCHEMA];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<Uuid, StepError> {
        let intent: Intent = run.output(RECORD_INTENT)?;
        let input = run.input();
        let now = run.now();
        let order = uow
            .step(orders::SCHEMA, "record_refund", async |tx| {
                orders::record_refund(tx, input.order_id, &intent.plan, now)
                    .await
                    .map_err(orders_error)
            })
            .await?;
        let reference = input.order_id.to_string();
        for line in &intent.plan.lines {
            let sku = Sku::parse(&line.sku).map_err(StepError::permanent)?;
            let quantity = Quantity::new(i64::from(line.quantity)).map_err(StepError::permanent)?;
            uow.step(inventory::SCHEMA, "return_stock", async |tx| {
                inventory::return_stock(tx, &reference, &sku, quantity, now)
                    .await
                    .map_err(inventory_error)
            })
            .await?;
        }
        uow.step(payments::SCHEMA, "settle_refund", async |tx| {
            payments::settle_refund(tx, run.run_id(), now)
                .await
                .map_err(payments_error)
        })
        .await?;
        let refunded = OrderRefunded {
            order_id: input.order_id,
            refund_id: run.run_id(),
            customer_id: intent.customer_id,
            requested_by: input.requested_by.clone(),
            currency: intent.currency,
            amount_minor: intent.plan.amount_minor,
            lines: intent.plan.lines,
            fully_refunded: order.status == OrderStatus::Refunded,
            refunded_at: now,
        };
        uow.emit(
            orders::SCHEMA,
            ORDER_REFUNDED,
            refunded.ordering_key(),
            &refunded,
        )?;
        Ok(run.run_id())
    }
}
