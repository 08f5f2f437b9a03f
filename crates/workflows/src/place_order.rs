//! Order placement as a durable saga: hold the stock (inventory reservations with an
//! expiry) → charge the customer (payments, through the gateway) → confirm the order
//! and emit `OrderPlaced`. A refusal at any step undoes the steps before it: the
//! charge is refunded, the hold released. The run's id is the order's id.

use std::sync::Arc;
use std::time::Duration;

use inventory::{Quantity, Sku};
use orchestration::{
    Fabric, FabricError, UnitOfWork,
    saga::{
        ExternalStep, IdempotencyKey, LocalStep, RetryPolicy, RunDetails, RunState, Saga,
        SagaContext, SagaError, SagaHandle, StepError, StepName,
    },
    sql::begin_write,
};
use orders::{CustomerId, LineRequest, NewOrder, Order, OrderPlaced};
use payments::{
    ChargeOutcome, ChargeRequest, GatewayError, NewPayment, PaymentGateway, PaymentPolicy,
    RefundRequest,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::ORDER_PLACED;

/// What the customer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrderCommand {
    /// Who orders.
    pub customer_id: CustomerId,
    /// The products and quantities, in the customer's order.
    pub lines: Vec<(Sku, Quantity)>,
}

/// The saga's input, as stored with its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Input {
    customer_id: String,
    lines: Vec<InputLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InputLine {
    sku: String,
    quantity: u32,
}

impl From<&PlaceOrderCommand> for Input {
    fn from(command: &PlaceOrderCommand) -> Self {
        Self {
            customer_id: command.customer_id.as_str().to_owned(),
            lines: command
                .lines
                .iter()
                .map(|(sku, quantity)| InputLine {
                    sku: sku.as_str().to_owned(),
                    quantity: quantity.get(),
                })
                .collect(),
        }
    }
}

/// Why a placement was refused: the run's rejection, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// A line asked for more than is available.
    OutOfStock {
        /// The product.
        sku: String,
        /// The quantity asked for.
        requested: u32,
        /// The quantity available.
        available: i64,
    },
    /// A line names a product that does not exist.
    UnknownProduct {
        /// The SKU.
        sku: String,
    },
    /// The order breaks a rule of the orders domain (e.g. products in different
    /// currencies).
    InvalidOrder {
        /// The rule.
        message: String,
    },
    /// The customer must be verified before paying this much.
    VerificationRequired {
        /// The order total, in minor units.
        amount_minor: i64,
        /// The most an unverified customer may pay.
        threshold_minor: i64,
    },
    /// The payment gateway declined the charge.
    PaymentDeclined {
        /// The gateway's reason.
        reason: String,
    },
}

/// How a placement stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceOrderOutcome {
    /// The order is confirmed: stock held for it, the customer charged.
    Placed(Order),
    /// Refused; whatever had taken effect was undone (a charge refunded, stock
    /// released).
    Refused(Refusal),
    /// Still running (for example, the gateway is slow or retrying); ask again later.
    Pending,
    /// Gave up for a reason that is not a business refusal (the gateway kept failing,
    /// an operator cancelled it). `state` says whether it was undone (`compensated`,
    /// `cancelled`) or needs an operator (`failed`).
    Abandoned {
        /// The run's state.
        state: RunState,
        /// What went wrong.
        error: String,
    },
}

/// The longest idempotency key a customer may use: a saga's key holds the customer's
/// id too.
pub const MAX_PLACEMENT_KEY_LEN: usize = orchestration::saga::MAX_KEY_LEN - CustomerId::MAX_LEN - 1;

/// The saga key of a caller's idempotency `key` within `scope` (a customer, an order):
/// `<scope>/<key>`, or a fresh key when there is none, so that the same key in
/// another scope names another run.
///
/// # Errors
/// [`SagaError::InvalidKey`] for a key longer than [`MAX_PLACEMENT_KEY_LEN`].
pub(crate) fn scoped_key(scope: &str, key: Option<&str>) -> Result<String, SagaError> {
    match key {
        Some(key) if key.len() > MAX_PLACEMENT_KEY_LEN => {
            Err(SagaError::InvalidKey("it is longer than 190 bytes"))
        }
        Some(key) => Ok(format!("{scope}/{key}")),
        None => Ok(format!("{scope}/{}", Uuid::now_v7())),
    }
}

/// The lease of a run whose steps call a gateway under `retry`: a minute, or two of the
/// slowest attempts with the longest backoff between if that is longer.
pub(crate) fn gateway_lease(retry: &RetryPolicy) -> Duration {
    Duration::from_secs(60).max((retry.timeout + retry.backoff.max) * 2)
}

/// A placement: its id (the order's id, once placed), whose it is, and how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The placement's id: its saga run's id, and the order's id.
    pub id: Uuid,
    /// The customer who placed it.
    pub customer_id: String,
    /// How it stands.
    pub outcome: PlaceOrderOutcome,
}

/// A placement failed for a reason that is not a business outcome.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    /// The idempotency key was used before for a different order.
    #[error("idempotency key `{key}` was used for another order ({placement})")]
    KeyReused {
        /// The key.
        key: String,
        /// The placement that holds it.
        placement: Uuid,
    },
    /// The placement is not running any more: only a running placement can be
    /// cancelled (a placed order is refunded instead).
    #[error("placement {placement} is {state}: only a running placement can be cancelled")]
    NotRunning {
        /// The placement.
        placement: Uuid,
        /// Its run's state.
        state: RunState,
    },
    /// The saga could not start or be read.
    #[error(transparent)]
    Saga(SagaError),
    /// Orders failed.
    #[error(transparent)]
    Orders(#[from] orders::Error),
}

impl PlaceOrderError {
    /// Whether a database could not be used right now: the same request may succeed
    /// later (with the same idempotency key, it cannot place twice).
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

    /// The placement that started, if the error came after its start.
    #[must_use]
    pub fn placement(&self) -> Option<Uuid> {
        match self {
            Self::KeyReused { placement, .. } | Self::NotRunning { placement, .. } => {
                Some(*placement)
            }
            Self::Saga(SagaError::Unread { run_id, .. }) => Some(*run_id),
            _ => None,
        }
    }
}

impl From<SagaError> for PlaceOrderError {
    fn from(err: SagaError) -> Self {
        match err {
            SagaError::KeyConflict { key, run_id, .. } => Self::KeyReused {
                key,
                placement: run_id,
            },
            other => Self::Saga(other),
        }
    }
}

/// What placing orders needs.
#[derive(Debug, Clone)]
pub struct PlaceOrderSettings {
    /// How long stock is held for a placement before the expired-holds job may
    /// release it (once the placement's run is over).
    pub hold: chrono::Duration,
    /// The payment gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// The payments rule for unverified customers.
    pub policy: PaymentPolicy,
    /// How calls to the gateway (charges and refunds) are timed out and retried.
    /// A run's lease is a minute, or two of the slowest attempts with the longest
    /// backoff between if that is longer.
    pub charge_retry: RetryPolicy,
}

/// Places orders. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    fabric: Fabric,
    saga: SagaHandle<Input>,
}

impl PlaceOrder {
    /// The saga's name.
    pub const SAGA: &'static str = "place_order";

    /// Registers the placement saga on `fabric`.
    ///
    /// # Errors
    /// The saga cannot run on the fabric's topology (a step's boundaries cannot
    /// commit with the run's checkpoint), or it is registered already.
    pub fn register(fabric: &Fabric, settings: PlaceOrderSettings) -> Result<Self, FabricError> {
        let retry = settings.charge_retry;
        let saga = Saga::new(Self::SAGA)
            .lease(gateway_lease(&retry))
            .local(
                HOLD_STOCK,
                HoldStock {
                    hold: settings.hold,
                },
            )
            .external(
                "charge",
                Charge {
                    fabric: fabric.clone(),
                    gateway: settings.gateway,
                    policy: settings.policy,
                },
            )
            .retry(retry)
            .local("confirm_order", ConfirmOrder);
        Ok(Self {
            fabric: fabric.clone(),
            saga: fabric.sagas().register(saga)?,
        })
    }

    /// Places an order under idempotency `key` (a fresh one if `None`), which is the
    /// customer's own (at most [`MAX_PLACEMENT_KEY_LEN`] bytes), and waits up to `wait` for the
    /// outcome. A key the customer used before with the same order returns that
    /// placement and repeats nothing.
    ///
    /// # Errors
    /// [`PlaceOrderError::KeyReused`] for a key used with a different order, or an
    /// infrastructure failure; business refusals are [`PlaceOrderOutcome`] values.
    pub async fn place(
        &self,
        key: Option<&str>,
        command: &PlaceOrderCommand,
        wait: Duration,
    ) -> Result<Placement, PlaceOrderError> {
        // Keys are the customer's own: another customer's key names another placement.
        let scoped =
            scoped_key(command.customer_id.as_str(), key).map_err(PlaceOrderError::Saga)?;
        let run = match self.saga.start(&scoped, &Input::from(command), wait).await {
            Ok(run) => run,
            Err(SagaError::KeyConflict { run_id, .. }) => {
                return Err(PlaceOrderError::KeyReused {
                    key: key.unwrap_or_default().to_owned(),
                    placement: run_id,
                });
            }
            Err(err) => return Err(err.into()),
        };
        self.placement(run).await
    }

    /// The placement with this id, as it stands; `None` if there is none.
    ///
    /// # Errors
    /// An infrastructure failure.
    pub async fn placement_of(&self, id: Uuid) -> Result<Option<Placement>, PlaceOrderError> {
        match self.saga.run(id).await {
            Ok(run) if run.run.saga == Self::SAGA => self.placement(run).await.map(Some),
            Ok(_) | Err(SagaError::UnknownRun(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Cancels placement `id` while it is running: it stops before its next step and
    /// undoes what took effect (the charge refunded, the hold released), through the
    /// saga's compensation. Waits up to `wait` for it to end; `None` if there is no
    /// placement with this id.
    ///
    /// # Errors
    /// [`PlaceOrderError::NotRunning`] for a placement that ended (or is being undone
    /// already), or an infrastructure failure.
    pub async fn cancel(
        &self,
        id: Uuid,
        wait: Duration,
    ) -> Result<Option<Placement>, PlaceOrderError> {
        let run = match self.saga.run(id).await {
            Ok(run) if run.run.saga == Self::SAGA => run,
            Ok(_) | Err(SagaError::UnknownRun(_)) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let not_running = |state| PlaceOrderError::NotRunning {
            placement: id,
            state,
        };
        if run.run.state != RunState::Running {
            return Err(not_running(run.run.state));
        }
        match self.fabric.sagas().cancel(id).await {
            Ok(_) => {}
            // It moved on between the read and the cancel.
            Err(SagaError::InvalidState { state, .. }) => return Err(not_running(state)),
            Err(err) => return Err(err.into()),
        }
        let run = self.saga.wait(id, wait).await?;
        self.placement(run).await.map(Some)
    }

    async fn placement(&self, run: RunDetails) -> Result<Placement, PlaceOrderError> {
        let id = run.run.id;
        let abandoned = |run: &RunDetails| PlaceOrderOutcome::Abandoned {
            state: run.run.state,
            error: run
                .run
                .last_error
                .clone()
                .unwrap_or_else(|| run.run.state.to_string()),
        };
        let outcome = match run.run.state {
            RunState::Running | RunState::Compensating => PlaceOrderOutcome::Pending,
            RunState::Completed => {
                let orders = self.fabric.connection(orders::SCHEMA).map_err(|err| {
                    PlaceOrderError::Orders(orders::Error::Corrupt(err.to_string()))
                })?;
                let order = orders::get(orders, id)
                    .await?
                    .ok_or_else(|| orders::Error::UnknownOrder { id })?;
                PlaceOrderOutcome::Placed(order)
            }
            RunState::Compensated => match run
                .run
                .rejection
                .clone()
                .map(serde_json::from_value::<Refusal>)
            {
                Some(Ok(refusal)) => PlaceOrderOutcome::Refused(refusal),
                // No refusal: a step kept failing, and what took effect was undone.
                _ => abandoned(&run),
            },
            RunState::Failed | RunState::Cancelled => abandoned(&run),
        };
        let customer_id = serde_json::from_value::<Input>(run.input.clone())
            .map_err(|err| {
                PlaceOrderError::Orders(orders::Error::Corrupt(format!(
                    "placement {id}: its input: {err}"
                )))
            })?
            .customer_id;
        Ok(Placement {
            id,
            customer_id,
            outcome,
        })
    }
}

/// The first step, whose output (the hold) the later steps read.
const HOLD_STOCK: StepName<Held> = StepName::new("hold_stock");

/// The hold: the priced lines and the reservations holding their stock.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    currency: String,
    total_minor: i64,
    lines: Vec<PricedLine>,
    reservations: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PricedLine {
    sku: String,
    quantity: u32,
    unit_price_minor: i64,
    currency: String,
}

impl Held {
    fn order(&self, customer_id: &str) -> Result<NewOrder, StepError> {
        let customer = CustomerId::parse(customer_id).map_err(StepError::permanent)?;
        let lines: Vec<LineRequest> = self
            .lines
            .iter()
            .map(|line| LineRequest {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
                currency: line.currency.clone(),
            })
            .collect();
        NewOrder::price(customer, &lines).map_err(|invalid| {
            StepError::reject(&Refusal::InvalidOrder {
                message: invalid.to_string(),
            })
        })
    }
}

fn inventory_error(err: inventory::Error) -> StepError {
    match err {
        inventory::Error::OutOfStock {
            sku,
            requested,
            available,
        } => StepError::reject(&Refusal::OutOfStock {
            sku: sku.as_str().to_owned(),
            requested,
            available,
        }),
        inventory::Error::UnknownProduct { sku } => StepError::reject(&Refusal::UnknownProduct {
            sku: sku.as_str().to_owned(),
        }),
        inventory::Error::Database(err) => StepError::transient(err),
        other => StepError::permanent(other),
    }
}

fn orders_error(err: orders::Error) -> StepError {
    match err {
        orders::Error::Database(err) => StepError::transient(err),
        other => StepError::permanent(other),
    }
}

fn payments_error(err: payments::Error) -> StepError {
    match err {
        payments::Error::VerificationRequired {
            amount_minor,
            threshold_minor,
            ..
        } => StepError::reject(&Refusal::VerificationRequired {
            amount_minor,
            threshold_minor,
        }),
        payments::Error::Database(err) => StepError::classified(&err),
        other => StepError::permanent(other),
    }
}

/// A gateway that did not answer may answer the same key next time; one that refused
/// will refuse again; its own store's failure is a database failure like any other.
fn gateway_error(err: GatewayError) -> StepError {
    match err {
        GatewayError::Database(err) => StepError::classified(&err),
        GatewayError::Unavailable(_) => StepError::transient(err),
        GatewayError::Refused(_) => StepError::permanent(err),
    }
}

/// Step 1: prices the order and holds its stock, in SKU order (so concurrent
/// placements lock stock rows in one order and cannot deadlock). Undone by releasing
/// the holds.
#[derive(Debug)]
struct HoldStock {
    hold: chrono::Duration,
}

impl LocalStep<Input> for HoldStock {
    type Output = Held;
    const BOUNDARIES: &'static [&'static str] = &[inventory::SCHEMA];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<Held, StepError> {
        let input = run.input();
        let mut wanted = Vec::with_capacity(input.lines.len());
        for line in &input.lines {
            let sku = Sku::parse(&line.sku).map_err(StepError::permanent)?;
            let quantity = Quantity::new(i64::from(line.quantity)).map_err(StepError::permanent)?;
            wanted.push((sku, quantity));
        }
        let mut skus: Vec<Sku> = wanted.iter().map(|(sku, _)| sku.clone()).collect();
        skus.sort();
        skus.dedup();
        let products = uow
            .step(inventory::SCHEMA, "find_products", async |tx| {
                inventory::find_products(tx, &skus)
                    .await
                    .map_err(inventory_error)
            })
            .await?;
        // Let the domains decide: every product must exist, and orders prices the
        // lines (one currency, totals that fit).
        let mut lines = Vec::with_capacity(wanted.len());
        for (sku, quantity) in &wanted {
            let product = products.iter().find(|p| &p.sku == sku).ok_or_else(|| {
                inventory_error(inventory::Error::UnknownProduct { sku: sku.clone() })
            })?;
            lines.push(PricedLine {
                sku: sku.as_str().to_owned(),
                quantity: quantity.get(),
                unit_price_minor: product.price.minor,
                currency: product.price.currency.as_str().to_owned(),
            });
        }
        let mut held = Held {
            currency: String::new(),
            total_minor: 0,
            lines,
            reservations: Vec::with_capacity(wanted.len()),
        };
        let order = held.order(&input.customer_id)?;
        held.currency = order.currency().to_owned();
        held.total_minor = order.total_minor();
        let now = run.now();
        let reference = run.run_id().to_string();
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        for (sku, quantity) in &wanted {
            let reservation = uow
                .step(inventory::SCHEMA, "reserve_stock", async |tx| {
                    inventory::reserve(tx, sku, *quantity, &reference, now + self.hold, now)
                        .await
                        .map_err(inventory_error)
                })
                .await?;
            held.reservations.push(reservation.id);
        }
        Ok(held)
    }

    async fn compensate(
        &self,
        run: &SagaContext<'_, Input>,
        held: Held,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<(), StepError> {
        let now = run.now();
        for id in held.reservations {
            uow.step(inventory::SCHEMA, "release_stock", async |tx| {
                match inventory::release(tx, id, now).await {
                    // Released already (by the expired-holds job): nothing to undo.
                    Ok(_) | Err(inventory::Error::ReservationNotHeld { .. }) => Ok(()),
                    Err(err) => Err(inventory_error(err)),
                }
            })
            .await?;
        }
        Ok(())
    }
}

/// Step 2: opens the payment (where the verification rule applies) and charges it
/// through the gateway under the step's idempotency key. Undone by a refund under
/// the compensation's key.
#[derive(Debug)]
struct Charge {
    fabric: Fabric,
    gateway: Arc<dyn PaymentGateway>,
    policy: PaymentPolicy,
}

/// The charge that went through.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charged {
    gateway_reference: String,
}

impl Charge {
    fn payments(&self) -> Result<&sea_orm::DatabaseConnection, StepError> {
        self.fabric
            .connection(payments::SCHEMA)
            .map_err(StepError::permanent)
    }
}

impl ExternalStep<Input> for Charge {
    type Output = Charged;

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        key: &IdempotencyKey,
    ) -> Result<Charged, StepError> {
        let held: Held = run.output(HOLD_STOCK)?;
        let db = self.payments()?;
        let key = key.action();
        let new = NewPayment {
            idempotency_key: key.clone(),
            order_reference: run.run_id().to_string(),
            customer_id: run.input().customer_id.clone(),
            amount_minor: held.total_minor,
            currency: held.currency.clone(),
        };
        let tx = begin_write(db).await?;
        payments::open(&tx, &new, &self.policy, run.now())
            .await
            .map_err(payments_error)?;
        tx.commit().await?;
        let request = ChargeRequest {
            key: key.clone(),
            amount_minor: held.total_minor,
            currency: held.currency,
            customer_id: new.customer_id,
            reference: new.order_reference,
        };
        let outcome = self.gateway.charge(&request).await.map_err(gateway_error)?;
        let tx = begin_write(db).await?;
        payments::record_charge(&tx, &key, &outcome, run.now())
            .await
            .map_err(payments_error)?;
        tx.commit().await?;
        match outcome {
            ChargeOutcome::Charged { reference } => Ok(Charged {
                gateway_reference: reference,
            }),
            ChargeOutcome::Declined { reason } => {
                Err(StepError::reject(&Refusal::PaymentDeclined { reason }))
            }
        }
    }

    async fn compensate(
        &self,
        run: &SagaContext<'_, Input>,
        key: &IdempotencyKey,
        _charged: Option<Charged>,
    ) -> Result<(), StepError> {
        // Refunds by the charge's key, so it also undoes a charge whose response was
        // lost, and does nothing for one that never happened.
        let held: Held = run.output(HOLD_STOCK)?;
        let request = RefundRequest {
            key: key.compensation(),
            charge_key: key.action(),
            amount_minor: held.total_minor,
        };
        let outcome = self.gateway.refund(&request).await.map_err(gateway_error)?;
        let tx = begin_write(self.payments()?).await?;
        match payments::record_refund(&tx, &key.action(), &outcome, run.now()).await {
            // The payment was never opened (the rule refused it first).
            Ok(_) | Err(payments::Error::UnknownPayment { .. }) => {}
            Err(err) => return Err(payments_error(err)),
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Step 3: creates the order, confirmed, keeps its stock held for good and tells the
/// subscribers. The last step: nothing after it can refuse, so it is never undone.
#[derive(Debug)]
struct ConfirmOrder;

impl LocalStep<Input> for ConfirmOrder {
    type Output = Uuid;
    const BOUNDARIES: &'static [&'static str] = &[orders::SCHEMA, inventory::SCHEMA];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<Uuid, StepError> {
        let held: Held = run.output(HOLD_STOCK)?;
        let new_order = held.order(&run.input().customer_id)?;
        let id = run.run_id();
        let reference = id.to_string();
        let now = run.now();
        uow.step(inventory::SCHEMA, "commit_holds", async |tx| {
            inventory::commit_holds(tx, &reference, now)
                .await
                .map_err(inventory_error)
        })
        .await?;
        let order = uow
            .step(orders::SCHEMA, "create_order", async |tx| {
                orders::create(tx, id, &new_order, now)
                    .await
                    .map_err(orders_error)?;
                orders::confirm(tx, id, now).await.map_err(orders_error)
            })
            .await?;
        let placed = OrderPlaced::of(&order);
        uow.emit(orders::SCHEMA, ORDER_PLACED, placed.ordering_key(), &placed)?;
        Ok(id)
    }
}
