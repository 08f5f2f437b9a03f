//! Order placement: reserve stock for every line, create the order and emit
//! `OrderPlaced`, in one unit of work across the inventory and orders boundaries. If
//! any line cannot be reserved, nothing is persisted and nothing is emitted.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use inventory::{Quantity, Sku};
use orchestration::{Fabric, UnitOfWorkError};
use orders::{CustomerId, LineRequest, NewOrder, Order, OrderPlaced};
use uuid::Uuid;

use crate::events::ORDER_PLACED;

/// Places orders. Its dependencies are its fields.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    fabric: Fabric,
    /// How long reserved stock is held for a pending order.
    hold: Duration,
}

/// What the customer asked for.
#[derive(Debug, Clone)]
pub struct PlaceOrderCommand {
    /// Who orders.
    pub customer_id: CustomerId,
    /// The products and quantities, in the customer's order.
    pub lines: Vec<(Sku, Quantity)>,
}

/// How a placement ended, as far as the business is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceOrderOutcome {
    /// The order exists and its stock is reserved.
    Placed(Order),
    /// A line asked for more than is available; nothing was reserved.
    OutOfStock {
        /// The product.
        sku: Sku,
        /// The quantity asked for.
        requested: u32,
        /// The quantity available.
        available: i64,
    },
    /// A line names a product that does not exist; nothing was reserved.
    UnknownProduct {
        /// The SKU.
        sku: Sku,
    },
}

/// A placement failed for a reason that is not a business outcome.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    /// The order breaks a rule of the orders domain (e.g. products in different currencies).
    #[error("invalid order: {0}")]
    InvalidOrder(#[from] orders::Invalid),
    /// Inventory failed.
    #[error(transparent)]
    Inventory(inventory::Error),
    /// Orders failed.
    #[error(transparent)]
    Orders(#[from] orders::Error),
    /// The unit of work failed.
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
}

/// Why the unit of work stopped: a business outcome that rolls it back, or a failure.
#[derive(Debug)]
enum Abort {
    Rejected(PlaceOrderOutcome),
    Failed(PlaceOrderError),
}

impl From<inventory::Error> for Abort {
    fn from(err: inventory::Error) -> Self {
        match err {
            inventory::Error::OutOfStock {
                sku,
                requested,
                available,
            } => Self::Rejected(PlaceOrderOutcome::OutOfStock {
                sku,
                requested,
                available,
            }),
            inventory::Error::UnknownProduct { sku } => {
                Self::Rejected(PlaceOrderOutcome::UnknownProduct { sku })
            }
            other => Self::Failed(PlaceOrderError::Inventory(other)),
        }
    }
}

impl<E: Into<PlaceOrderError>> From<E> for Abort {
    fn from(err: E) -> Self {
        Self::Failed(err.into())
    }
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(outcome) => write!(f, "rejected: {outcome:?}"),
            Self::Failed(err) => err.fmt(f),
        }
    }
}

impl PlaceOrder {
    /// The boundaries a placement touches: they must be able to commit together.
    pub const BOUNDARIES: [&'static str; 2] = [inventory::SCHEMA, orders::SCHEMA];

    /// A workflow placing orders on `fabric`, holding stock for `hold`.
    #[must_use]
    pub fn new(fabric: Fabric, hold: Duration) -> Self {
        Self { fabric, hold }
    }

    /// Places an order at `now`.
    ///
    /// # Errors
    /// An invalid order, or an infrastructure failure; business refusals are
    /// [`PlaceOrderOutcome`] values.
    pub async fn place(
        &self,
        command: &PlaceOrderCommand,
        now: DateTime<Utc>,
    ) -> Result<PlaceOrderOutcome, PlaceOrderError> {
        let order_id = Uuid::now_v7();
        let reference = order_id.to_string();
        let expires_at = now + self.hold;
        let mut skus: Vec<Sku> = command.lines.iter().map(|(sku, _)| sku.clone()).collect();
        skus.sort();
        skus.dedup();
        // Reserve in SKU order so that concurrent placements lock stock rows in one
        // order and cannot deadlock each other.
        let mut reservation_order: Vec<&(Sku, Quantity)> = command.lines.iter().collect();
        reservation_order.sort_by(|a, b| a.0.cmp(&b.0));

        let run = self
            .fabric
            .unit_of_work("place_order")
            .run(async |uow| -> Result<Order, Abort> {
                // Fetch.
                let products = uow
                    .step(inventory::SCHEMA, "find_products", async |tx| {
                        inventory::find_products(tx, &skus).await
                    })
                    .await?;
                // Let the domain decide: every product must exist, and orders prices
                // the lines and computes the totals.
                let mut lines = Vec::with_capacity(command.lines.len());
                for (sku, quantity) in &command.lines {
                    let Some(product) = products.iter().find(|p| &p.sku == sku) else {
                        return Err(Abort::Rejected(PlaceOrderOutcome::UnknownProduct {
                            sku: sku.clone(),
                        }));
                    };
                    lines.push(LineRequest {
                        sku: sku.as_str().to_owned(),
                        quantity: quantity.get(),
                        unit_price_minor: product.price.minor,
                        currency: product.price.currency.as_str().to_owned(),
                    });
                }
                let new_order = NewOrder::price(command.customer_id.clone(), &lines)?;
                // Act.
                for (sku, quantity) in &reservation_order {
                    uow.step(inventory::SCHEMA, "reserve_stock", async |tx| {
                        inventory::reserve(tx, sku, *quantity, &reference, expires_at, now).await
                    })
                    .await?;
                }
                // Persist, and tell the subscribers once it has committed.
                let order = uow
                    .step(orders::SCHEMA, "create_order", async |tx| {
                        orders::create(tx, order_id, &new_order, now).await
                    })
                    .await?;
                let placed = OrderPlaced::of(&order);
                uow.emit(orders::SCHEMA, ORDER_PLACED, placed.ordering_key(), &placed)?;
                Ok(order)
            })
            .await;
        match run {
            Ok(done) => Ok(PlaceOrderOutcome::Placed(done.value)),
            Err(Abort::Rejected(outcome)) => Ok(outcome),
            Err(Abort::Failed(err)) => Err(err),
        }
    }
}
