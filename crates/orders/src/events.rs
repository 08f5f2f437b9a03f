//! The events the orders boundary publishes: plain serde structs, stable on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Order, OrderLine, RefundLine};

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

/// Units of an order were refunded: the money went back to the customer and the units
/// back to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefunded {
    /// The order.
    pub order_id: Uuid,
    /// The refund (its saga run's id).
    pub refund_id: Uuid,
    /// Whose order it is.
    pub customer_id: String,
    /// Who asked for the refund (`customer:<id>` or `account:<id>` of staff).
    pub requested_by: String,
    /// The ISO 4217 currency of the amount.
    pub currency: String,
    /// The amount given back, in minor units.
    pub amount_minor: i64,
    /// The units given back.
    pub lines: Vec<RefundLine>,
    /// Whether every unit of the order is now refunded.
    pub fully_refunded: bool,
    /// When it was recorded.
    pub refunded_at: DateTime<Utc>,
}

impl OrderRefunded {
    /// The event type's name on the wire.
    pub const NAME: &'static str = "orders.order_refunded";

    /// Events about one order are ordered by its id.
    #[must_use]
    pub fn ordering_key(&self) -> String {
        self.order_id.to_string()
    }
}
