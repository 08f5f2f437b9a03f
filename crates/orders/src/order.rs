//! The order as the domain sees it: lines priced by the caller, totals computed here,
//! and the status lifecycle.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Invalid;

/// The customer placing an order: 1–64 visible ASCII characters (`!` to `~`: no
/// spaces, no control characters), so that it reads the same in every log, URL and
/// collation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerId(String);

impl CustomerId {
    /// The longest customer id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses a customer id.
    ///
    /// # Errors
    /// Empty, longer than 64 characters, or holding anything but visible ASCII.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(Invalid("must be 1 to 64 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid(
                "may contain only visible ASCII characters (no spaces or control characters)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed; stock is held.
    Pending,
    /// Accepted for fulfilment.
    Confirmed,
    /// Some of its units were refunded (and restocked); the rest may be.
    PartlyRefunded,
    /// Every unit was refunded; final.
    Refunded,
    /// Called off; final.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Confirmed,
        Self::PartlyRefunded,
        Self::Refunded,
        Self::Cancelled,
    ];

    /// Whether the lifecycle allows going from `self` to `to`.
    #[must_use]
    pub fn can_become(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Confirmed | Self::Cancelled)
                | (
                    Self::Confirmed,
                    Self::Cancelled | Self::PartlyRefunded | Self::Refunded
                )
                | (Self::PartlyRefunded, Self::PartlyRefunded | Self::Refunded)
        )
    }

    /// Whether units of an order in this status may be refunded.
    #[must_use]
    pub fn is_refundable(self) -> bool {
        matches!(self, Self::Confirmed | Self::PartlyRefunded)
    }

    /// The status as stored and serialized: `pending`, `confirmed`, `partly_refunded`,
    /// `refunded` or `cancelled`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::PartlyRefunded => "partly_refunded",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `s` (as [`Self::as_str`] names it), if any.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line as the caller prices it: a product, a quantity and its unit price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRequest {
    /// The product's SKU.
    pub sku: String,
    /// Units ordered (at least 1).
    pub quantity: u32,
    /// Price of one unit in minor units.
    pub unit_price_minor: i64,
    /// The price's ISO 4217 currency.
    pub currency: String,
}

/// A line of an order, with its computed total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    /// The product's SKU.
    pub sku: String,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit in minor units.
    pub unit_price_minor: i64,
    /// `quantity × unit_price_minor`.
    pub line_total_minor: i64,
    /// Units refunded so far (at most `quantity`).
    pub refunded_quantity: u32,
}

impl OrderLine {
    /// Units that may still be refunded.
    #[must_use]
    pub fn refundable(&self) -> u32 {
        self.quantity.saturating_sub(self.refunded_quantity)
    }
}

/// An order ready to be stored: lines priced in one currency, totals computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub(crate) customer_id: CustomerId,
    pub(crate) currency: String,
    pub(crate) lines: Vec<OrderLine>,
    pub(crate) total_minor: i64,
}

impl NewOrder {
    /// Prices an order from its lines.
    ///
    /// # Errors
    /// No lines, more than 100 lines, a zero quantity, a negative price, lines in
    /// different currencies, or a total that does not fit in 64 bits.
    pub fn price(customer_id: CustomerId, lines: &[LineRequest]) -> Result<Self, Invalid> {
        let Some(first) = lines.first() else {
            return Err(Invalid("an order needs at least one line"));
        };
        if lines.len() > 100 {
            return Err(Invalid("an order has at most 100 lines"));
        }
        let mut total: i64 = 0;
        let mut priced = Vec::with_capacity(lines.len());
        for line in lines {
            if line.quantity == 0 {
                return Err(Invalid("a line's quantity must be at least 1"));
            }
            // Every placement is charged, and a gateway cannot charge nothing.
            if line.unit_price_minor <= 0 {
                return Err(Invalid("a unit price must be more than zero"));
            }
            if line.currency != first.currency {
                return Err(Invalid("all lines of an order must be in one currency"));
            }
            let line_total = line
                .unit_price_minor
                .checked_mul(i64::from(line.quantity))
                .ok_or(Invalid("a line total is too large"))?;
            total = total
                .checked_add(line_total)
                .ok_or(Invalid("the order total is too large"))?;
            priced.push(OrderLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
                line_total_minor: line_total,
                refunded_quantity: 0,
            });
        }
        Ok(Self {
            customer_id,
            currency: first.currency.clone(),
            lines: priced,
            total_minor: total,
        })
    }

    /// The order total in minor units.
    #[must_use]
    pub fn total_minor(&self) -> i64 {
        self.total_minor
    }

    /// The ISO 4217 currency of every amount.
    #[must_use]
    pub fn currency(&self) -> &str {
        &self.currency
    }
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Its id.
    pub id: Uuid,
    /// Who placed it.
    pub customer_id: String,
    /// Where it is in its lifecycle.
    pub status: OrderStatus,
    /// The ISO 4217 currency of every amount.
    pub currency: String,
    /// The sum of the line totals, in minor units.
    pub total_minor: i64,
    /// Its lines, in the order given.
    pub lines: Vec<OrderLine>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32, price: i64, currency: &str) -> LineRequest {
        LineRequest {
            sku: sku.to_owned(),
            quantity,
            unit_price_minor: price,
            currency: currency.to_owned(),
        }
    }

    fn customer() -> CustomerId {
        CustomerId::parse("c-1").unwrap()
    }

    #[test]
    fn totals_are_computed_from_lines() {
        let order = NewOrder::price(
            customer(),
            &[line("A", 3, 250, "EUR"), line("B", 1, 1999, "EUR")],
        )
        .unwrap();
        assert_eq!(order.total_minor(), 3 * 250 + 1999);
        assert_eq!(order.lines[0].line_total_minor, 750);
    }

    #[test]
    fn bad_orders_are_rejected() {
        let cases: [(&[LineRequest], &str); 6] = [
            (&[], "an order needs at least one line"),
            (
                &[line("A", 0, 1, "EUR")],
                "a line's quantity must be at least 1",
            ),
            (
                &[line("A", 1, -1, "EUR")],
                "a unit price must be more than zero",
            ),
            (
                &[line("A", 1, 0, "EUR")],
                "a unit price must be more than zero",
            ),
            (
                &[line("A", 1, 1, "EUR"), line("B", 1, 1, "USD")],
                "all lines of an order must be in one currency",
            ),
            (
                &[line("A", u32::MAX, i64::MAX / 2, "EUR")],
                "a line total is too large",
            ),
        ];
        for (lines, message) in cases {
            assert_eq!(
                NewOrder::price(customer(), lines).unwrap_err(),
                Invalid(message)
            );
        }
    }

    #[test]
    fn lifecycle() {
        use OrderStatus::*;
        let allowed = [
            (Pending, Confirmed),
            (Pending, Cancelled),
            (Confirmed, Cancelled),
            (Confirmed, PartlyRefunded),
            (Confirmed, Refunded),
            (PartlyRefunded, PartlyRefunded),
            (PartlyRefunded, Refunded),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn customer_ids() {
        assert!(CustomerId::parse("alice@example.com").is_ok());
        for bad in ["", "has space", "tab\t", "caf\u{e9}", &"x".repeat(65)] {
            assert!(CustomerId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
