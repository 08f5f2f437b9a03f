//! Refunds as the orders domain sees them: which units of an order may be given back,
//! and what they cost.

use serde::{Deserialize, Serialize};

use crate::order::{Order, OrderStatus};

/// Units of one line of an order to refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    /// The line's number in its order, from 1.
    pub line_no: u32,
    /// The product's SKU.
    pub sku: String,
    /// Units to refund (at least 1).
    pub quantity: u32,
    /// The price of one unit when the order was placed, in minor units.
    pub unit_price_minor: i64,
}

/// What a refund gives back: lines of one order and their amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPlan {
    /// The lines, in the order's line order; each at least one unit.
    pub lines: Vec<RefundLine>,
    /// The sum of `quantity × unit_price_minor`, in minor units.
    pub amount_minor: i64,
}

/// Why the units asked for cannot be refunded: a business answer, not a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefundRefused {
    /// The order is not confirmed (pending, cancelled or refunded already).
    #[error("an order that is {status} cannot be refunded")]
    NotRefundable {
        /// Its status.
        status: OrderStatus,
    },
    /// Every unit was refunded already, or nothing was asked for.
    #[error("nothing is left to refund")]
    NothingToRefund,
    /// A product the order does not hold.
    #[error("the order has no line with SKU {sku}")]
    NotInOrder {
        /// The SKU asked for.
        sku: String,
    },
    /// More units of a product than were ordered and not refunded yet.
    #[error("{requested} of {sku} asked for, {refundable} may be refunded")]
    MoreThanOrdered {
        /// The SKU.
        sku: String,
        /// The units asked for.
        requested: u32,
        /// The units that may still be refunded.
        refundable: u32,
    },
}

impl Order {
    /// The refund of `asked` (SKU and units; the same SKU may appear more than once),
    /// or of every unit not refunded yet for `None`. Units of a SKU ordered on several
    /// lines are taken from the first line first.
    ///
    /// # Errors
    /// [`RefundRefused`] when the order is not confirmed, when nothing would be
    /// refunded, or when a SKU is not in the order or asked for beyond what is left.
    pub fn refund(&self, asked: Option<&[(String, u32)]>) -> Result<RefundPlan, RefundRefused> {
        if !self.status.is_refundable() {
            return Err(RefundRefused::NotRefundable {
                status: self.status,
            });
        }
        let mut left: Vec<u32> = self
            .lines
            .iter()
            .map(crate::OrderLine::refundable)
            .collect();
        let mut taken = vec![0_u32; self.lines.len()];
        match asked {
            None => taken.clone_from(&left),
            Some(asked) => {
                // Per SKU, in the order first asked, so that a refusal names the SKU.
                let mut wanted: Vec<(&str, u32)> = Vec::new();
                for (sku, quantity) in asked {
                    match wanted.iter_mut().find(|(s, _)| s == sku) {
                        Some((_, total)) => *total = total.saturating_add(*quantity),
                        None => wanted.push((sku, *quantity)),
                    }
                }
                for (sku, requested) in wanted {
                    let lines: Vec<usize> = (0..self.lines.len())
                        .filter(|&i| self.lines[i].sku == sku)
                        .collect();
                    if lines.is_empty() {
                        return Err(RefundRefused::NotInOrder {
                            sku: sku.to_owned(),
                        });
                    }
                    let refundable = lines.iter().map(|&i| left[i]).sum::<u32>();
                    if requested > refundable {
                        return Err(RefundRefused::MoreThanOrdered {
                            sku: sku.to_owned(),
                            requested,
                            refundable,
                        });
                    }
                    let mut rest = requested;
                    for i in lines {
                        let take = rest.min(left[i]);
                        taken[i] += take;
                        left[i] -= take;
                        rest -= take;
                    }
                }
            }
        }
        let mut plan = RefundPlan {
            lines: Vec::new(),
            amount_minor: 0,
        };
        for ((line, quantity), line_no) in self.lines.iter().zip(taken).zip(1..) {
            if quantity == 0 {
                continue;
            }
            // At most the line's total, which fits.
            plan.amount_minor += line.unit_price_minor * i64::from(quantity);
            plan.lines.push(RefundLine {
                line_no,
                sku: line.sku.clone(),
                quantity,
                unit_price_minor: line.unit_price_minor,
            });
        }
        if plan.lines.is_empty() {
            return Err(RefundRefused::NothingToRefund);
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::OrderLine;

    fn order(status: OrderStatus, lines: &[(&str, u32, u32)]) -> Order {
        Order {
            id: Uuid::nil(),
            customer_id: "c-1".to_owned(),
            status,
            currency: "EUR".to_owned(),
            total_minor: 0,
            lines: lines
                .iter()
                .map(|&(sku, quantity, refunded)| OrderLine {
                    sku: sku.to_owned(),
                    quantity,
                    unit_price_minor: 100,
                    line_total_minor: 100 * i64::from(quantity),
                    refunded_quantity: refunded,
                })
                .collect(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn asked(lines: &[(&str, u32)]) -> Vec<(String, u32)> {
        lines.iter().map(|&(s, q)| (s.to_owned(), q)).collect()
    }

    #[test]
    fn a_full_refund_takes_every_unit_left() {
        let order = order(OrderStatus::PartlyRefunded, &[("A", 3, 1), ("B", 2, 2)]);
        let plan = order.refund(None).unwrap();
        assert_eq!(plan.amount_minor, 200);
        assert_eq!(plan.lines.len(), 1);
        assert_eq!((plan.lines[0].line_no, plan.lines[0].quantity), (1, 2));
    }

    #[test]
    fn units_of_a_sku_on_several_lines_come_from_the_first_line_first() {
        let order = order(
            OrderStatus::Confirmed,
            &[("A", 2, 1), ("B", 1, 0), ("A", 5, 0)],
        );
        let plan = order.refund(Some(&asked(&[("A", 2), ("A", 1)]))).unwrap();
        let taken: Vec<(u32, u32)> = plan.lines.iter().map(|l| (l.line_no, l.quantity)).collect();
        assert_eq!(taken, [(1, 1), (3, 2)]);
        assert_eq!(plan.amount_minor, 300);
    }

    #[test]
    fn refusals() {
        let confirmed = order(OrderStatus::Confirmed, &[("A", 2, 0)]);
        assert_eq!(
            confirmed.refund(Some(&asked(&[("A", 3)]))),
            Err(RefundRefused::MoreThanOrdered {
                sku: "A".to_owned(),
                requested: 3,
                refundable: 2
            })
        );
        assert_eq!(
            confirmed.refund(Some(&asked(&[("Z", 1)]))),
            Err(RefundRefused::NotInOrder {
                sku: "Z".to_owned()
            })
        );
        assert_eq!(
            confirmed.refund(Some(&[])),
            Err(RefundRefused::NothingToRefund)
        );
        let done = order(OrderStatus::PartlyRefunded, &[("A", 2, 2)]);
        assert_eq!(done.refund(None), Err(RefundRefused::NothingToRefund));
        for status in [
            OrderStatus::Pending,
            OrderStatus::Refunded,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(
                order(status, &[("A", 1, 0)]).refund(None),
                Err(RefundRefused::NotRefundable { status })
            );
        }
    }
}
