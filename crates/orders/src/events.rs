//! The events the orders boundary publishes: plain serde structs, stable on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Order, OrderLine};

/// An order was placed: its stock is reserved and it awaits confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: Uuid,
    /// Who placed it.
    pub customer_id: String,
    /// The ISO 4217 currency of every amount.
    pub currency: String,
    /// The order's total, in minor units.
    pub total_minor: i64,
    /// What was ordered.
    pub lines: Vec<PlacedLine>,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
}

/// A line of a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLine {
    /// The product's SKU.
    pub sku: String,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit in minor units.
    pub unit_price_minor: i64,
}

impl OrderPlaced {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "orders.order_placed";

    /// The event for a just-placed `order`.
    #[must_use]
    pub fn of(order: &Order) -> Self {
        Self {
            order_id: order.id,
            customer_id: order.customer_id.clone(),
            currency: order.currency.clone(),
            total_minor: order.total_minor,
            lines: order.lines.iter().map(PlacedLine::from).collect(),
            placed_at: order.created_at,
        }
    }

    /// Events about one order are ordered by its id.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        self.order_id.to_string()
    }
}

impl From<&OrderLine> for PlacedLine {
    fn from(line: &OrderLine) -> Self {
        Self {
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_price_minor: line.unit_price_minor,
        }
    }
}
