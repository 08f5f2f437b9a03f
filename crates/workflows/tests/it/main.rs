//! Workflow tests across the inventory and orders boundaries, on every engine.

use chrono::{Duration, Utc};
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, Sku};
use orchestration::testing::TestDatabase;
use orders::{CustomerId, OrderStatus};
use workflows::{PlaceOrder, PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome};

orchestration::engine_tests! {
    boundaries: [migrations::inventory(), migrations::orders()];
    placing_an_order_reserves_every_line,
    a_line_out_of_stock_persists_nothing,
    an_unknown_product_persists_nothing,
    products_in_two_currencies_are_an_invalid_order,
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

async fn add(db: &TestDatabase, code: &str, price: i64, currency: &str, stock: u32) {
    let product = NewProduct {
        sku: sku(code),
        name: ProductName::parse(code).unwrap(),
        price: Money::new(price, Currency::parse(currency).unwrap()).unwrap(),
        initial_stock: stock,
    };
    inventory::add_product(db.connection(inventory::SCHEMA), &product, Utc::now())
        .await
        .unwrap();
}

fn command(lines: &[(&str, i64)]) -> PlaceOrderCommand {
    PlaceOrderCommand {
        customer_id: CustomerId::parse("c-1").unwrap(),
        lines: lines
            .iter()
            .map(|(code, n)| (sku(code), Quantity::new(*n).unwrap()))
            .collect(),
    }
}

async fn stock(db: &TestDatabase, code: &str) -> (i64, i64) {
    let product = inventory::get(db.connection(inventory::SCHEMA), &sku(code))
        .await
        .unwrap()
        .unwrap();
    (product.available, product.reserved)
}

fn workflow(db: &TestDatabase) -> PlaceOrder {
    PlaceOrder::new(db.fabric().clone(), Duration::minutes(15))
}

async fn placing_an_order_reserves_every_line(db: TestDatabase) {
    add(&db, "B", 500, "EUR", 10).await;
    add(&db, "A", 1200, "EUR", 10).await;
    let outcome = workflow(&db)
        .place(&command(&[("B", 2), ("A", 3)]), Utc::now())
        .await
        .unwrap();
    let PlaceOrderOutcome::Placed(order) = outcome else {
        panic!("expected Placed, got {outcome:?}");
    };
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.total_minor, 2 * 500 + 3 * 1200);
    assert_eq!(order.lines[0].sku, "B", "lines keep the customer's order");
    assert_eq!(stock(&db, "A").await, (7, 3));
    assert_eq!(stock(&db, "B").await, (8, 2));
    let reservations =
        inventory::reservations_for(db.connection(inventory::SCHEMA), &order.id.to_string())
            .await
            .unwrap();
    assert_eq!(reservations.len(), 2);
    let stored = orders::get(db.connection(orders::SCHEMA), order.id)
        .await
        .unwrap();
    assert_eq!(stored.map(|o| o.total_minor), Some(order.total_minor));
}

async fn a_line_out_of_stock_persists_nothing(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    add(&db, "B", 100, "EUR", 1).await;
    // A is reserved first (SKU order), then B fails: A's reservation must roll back.
    let outcome = workflow(&db)
        .place(&command(&[("A", 4), ("B", 2)]), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PlaceOrderOutcome::OutOfStock {
            sku: sku("B"),
            requested: 2,
            available: 1
        }
    );
    assert_eq!(stock(&db, "A").await, (10, 0));
    assert_eq!(stock(&db, "B").await, (1, 0));
}

async fn an_unknown_product_persists_nothing(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let outcome = workflow(&db)
        .place(&command(&[("A", 1), ("GHOST", 1)]), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PlaceOrderOutcome::UnknownProduct { sku: sku("GHOST") }
    );
    assert_eq!(stock(&db, "A").await, (10, 0));
}

async fn products_in_two_currencies_are_an_invalid_order(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    add(&db, "B", 100, "USD", 10).await;
    let err = workflow(&db)
        .place(&command(&[("A", 1), ("B", 1)]), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, PlaceOrderError::InvalidOrder(_)), "{err}");
    assert_eq!(stock(&db, "A").await, (10, 0));
}
