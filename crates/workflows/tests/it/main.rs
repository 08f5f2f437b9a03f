//! Workflow tests across the inventory, orders and audit boundaries, on every engine.

use chrono::{Duration, SubsecRound, Utc};
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, Sku};
use orchestration::testing::TestDatabase;
use orchestration::{Dispatcher, DispatcherOptions, Fabric, Host, Policy, RunningHost};
use orders::{CustomerId, OrderStatus};
use sea_orm::ConnectionTrait;
use workflows::{PlaceOrder, PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome};

orchestration::engine_tests! {
    boundaries: [migrations::inventory(), migrations::orders(), migrations::audit()];
    placing_an_order_reserves_every_line,
    a_line_out_of_stock_persists_nothing,
    an_unknown_product_persists_nothing,
    products_in_two_currencies_are_an_invalid_order,
    a_placed_order_is_audited_once_its_event_is_delivered,
    an_audit_failure_never_changes_or_delays_the_order,
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
    // Subscribing twice would fail; only the first call per fabric does it.
    if db.fabric().subscribers().is_empty() {
        workflows::subscribe(db.fabric()).unwrap();
    }
    PlaceOrder::new(db.fabric().clone(), Duration::minutes(15))
}

fn dispatcher(fabric: &Fabric) -> RunningHost {
    let mut host = Host::new(fabric.clone());
    let options = DispatcherOptions {
        max_attempts: 2,
        backoff_initial: std::time::Duration::from_millis(10),
        poll_interval: std::time::Duration::from_millis(50),
        ..DispatcherOptions::default()
    };
    host.add(Dispatcher::new(options), Policy::StopHost)
        .unwrap();
    host.start()
}

/// Waits (up to 30 s) until `done` holds.
async fn eventually<F: AsyncFn() -> bool>(what: &str, done: F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn a_placed_order_is_audited_once_its_event_is_delivered(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let workflow = workflow(&db);
    // Refused placements emit nothing.
    workflow
        .place(&command(&[("A", 50)]), Utc::now())
        .await
        .unwrap();
    // At the microsecond precision every backend stores.
    let now = Utc::now().trunc_subsecs(6);
    let PlaceOrderOutcome::Placed(order) =
        workflow.place(&command(&[("A", 2)]), now).await.unwrap()
    else {
        panic!("expected Placed");
    };
    let status = db.fabric().outbox_status().await.unwrap();
    assert_eq!(status[0].pending, 1, "{status:?}");
    let host = dispatcher(db.fabric());
    let subject = audit::Subject::parse(&format!("order:{}", order.id)).unwrap();
    let audit_db = db.connection(audit::SCHEMA);
    eventually("the order is audited", async || {
        !audit::entries_for(audit_db, &subject, 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let entries = audit::entries_for(audit_db, &subject, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action.as_str(), "order.placed");
    assert_eq!(entries[0].actor.as_str(), "customer:c-1");
    assert_eq!(entries[0].occurred_at, order.created_at);
    assert_eq!(entries[0].data["total_minor"], 200);
    host.shutdown().await;
}

async fn an_audit_failure_never_changes_or_delays_the_order(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let workflow = workflow(&db);
    let host = dispatcher(db.fabric());
    // Audit is broken: its table is gone.
    db.connection(audit::SCHEMA)
        .execute_unprepared("DROP TABLE audit.entries")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let outcome = workflow
        .place(&command(&[("A", 2)]), Utc::now())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let PlaceOrderOutcome::Placed(order) = outcome else {
        panic!("expected Placed, got {outcome:?}");
    };
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    // The audit subscriber failed its attempts; the order stands.
    eventually("the audit message is dead", async || {
        db.fabric().outbox_status().await.unwrap()[0].dead == 1
    })
    .await;
    let stored = orders::get(db.connection(orders::SCHEMA), order.id)
        .await
        .unwrap()
        .expect("the order");
    assert_eq!(stored.status, OrderStatus::Pending);
    assert_eq!(stock(&db, "A").await, (8, 2));
    host.shutdown().await;
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
