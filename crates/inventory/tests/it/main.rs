//! Inventory's integration tests, run on SQLite, PostgreSQL and MariaDB.

use chrono::{Duration, Utc};
use inventory::{
    Currency, Error, Money, NewProduct, ProductName, Quantity, ReservationStatus, Sku,
};
use orchestration::UnitOfWorkError;
use orchestration::testing::TestDatabase;

orchestration::engine_tests! {
    boundaries: [migrations::inventory()];
    products_are_added_found_and_restocked,
    reserve_never_oversells_under_concurrency,
    release_returns_stock_once,
    reservations_after_a_read_report_current_stock,
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

fn widget(code: &str, stock: u32) -> NewProduct {
    NewProduct {
        sku: sku(code),
        name: ProductName::parse("Widget").unwrap(),
        price: Money::new(1250, Currency::parse("EUR").unwrap()).unwrap(),
        initial_stock: stock,
    }
}

async fn products_are_added_found_and_restocked(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    let added = inventory::add_product(conn, &widget("W-1", 5), now)
        .await
        .unwrap();
    assert_eq!((added.available, added.reserved), (5, 0));
    let found = inventory::get(conn, &sku("W-1")).await.unwrap().unwrap();
    assert_eq!(found, added);
    assert!(inventory::get(conn, &sku("W-404")).await.unwrap().is_none());

    let err = inventory::add_product(conn, &widget("W-1", 1), now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DuplicateSku { ref sku } if sku.as_str() == "W-1"),
        "{err}"
    );

    let restocked = inventory::restock(conn, &sku("W-1"), qty(7), now)
        .await
        .unwrap();
    assert_eq!(restocked.available, 12);
    let err = inventory::restock(conn, &sku("W-404"), qty(1), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownProduct { .. }), "{err}");
}

/// Errors of a reservation run inside a unit of work.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Inventory(#[from] Error),
    #[error(transparent)]
    Fabric(#[from] UnitOfWorkError),
}

async fn reserve_never_oversells_under_concurrency(db: TestDatabase) {
    let now = Utc::now();
    inventory::add_product(db.connection(inventory::SCHEMA), &widget("HOT", 50), now)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                let reference = format!("task-{i}");
                fabric
                    .unit_of_work("reserve")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(inventory::SCHEMA, "reserve", async |tx| {
                            inventory::reserve(
                                tx,
                                &sku("HOT"),
                                qty(3),
                                &reference,
                                now + Duration::minutes(5),
                                now,
                            )
                            .await
                        })
                        .await
                    })
                    .await
            })
        })
        .collect();
    let (mut held, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => {
                assert_eq!(done.value.status, ReservationStatus::Held);
                held += 1;
            }
            Err(RunError::Inventory(Error::OutOfStock {
                requested,
                available,
                ..
            })) => {
                assert_eq!(requested, 3);
                assert!(available < 3, "refused with {available} available");
                refused += 1;
            }
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert_eq!((held, refused), (16, 4));
    let product = inventory::get(db.connection(inventory::SCHEMA), &sku("HOT"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((product.available, product.reserved), (2, 48));
}

async fn release_returns_stock_once(db: TestDatabase) {
    let conn = db.connection(inventory::SCHEMA);
    let now = Utc::now();
    inventory::add_product(conn, &widget("R-1", 10), now)
        .await
        .unwrap();
    let held = inventory::reserve(conn, &sku("R-1"), qty(4), "order-1", now, now)
        .await
        .unwrap();
    let err = inventory::reserve(conn, &sku("R-1"), qty(7), "order-2", now, now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfStock {
                requested: 7,
                available: 6,
                ..
            }
        ),
        "{err}"
    );
    let err = inventory::reserve(conn, &sku("NOPE"), qty(1), "order-3", now, now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownProduct { .. }), "{err}");

    let released = inventory::release(conn, held.id, now).await.unwrap();
    assert_eq!(released.status, ReservationStatus::Released);
    let err = inventory::release(conn, held.id, now).await.unwrap_err();
    assert!(matches!(err, Error::ReservationNotHeld { .. }), "{err}");
    let product = inventory::get(conn, &sku("R-1")).await.unwrap().unwrap();
    assert_eq!((product.available, product.reserved), (10, 0));
    let reservations = inventory::reservations_for(conn, "order-1").await.unwrap();
    assert_eq!(reservations.len(), 1);
    assert_eq!(reservations[0].status, ReservationStatus::Released);
}

/// Units of work that read first (a snapshot on MySQL's REPEATABLE READ) and then
/// reserve two products: refusals report the current stock, and none is lost. A
/// conditional `UPDATE` alone misreported stock here on MariaDB.
async fn reservations_after_a_read_report_current_stock(db: TestDatabase) {
    let now = Utc::now();
    for code in ["A", "B"] {
        inventory::add_product(db.connection(inventory::SCHEMA), &widget(code, 60), now)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                let reference = format!("task-{i}");
                let units = fastrand::i64(1..=3);
                let done = fabric
                    .unit_of_work("reserve_two")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(inventory::SCHEMA, "find_products", async |tx| {
                            inventory::find_products(tx, &[sku("A"), sku("B")]).await
                        })
                        .await?;
                        for code in ["A", "B"] {
                            uow.step(inventory::SCHEMA, "reserve", async |tx| {
                                inventory::reserve(tx, &sku(code), qty(units), &reference, now, now)
                                    .await
                            })
                            .await?;
                        }
                        Ok(())
                    })
                    .await;
                (units, done)
            })
        })
        .collect();
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            (units, Ok(_)) => reserved += units,
            (
                _,
                Err(RunError::Inventory(Error::OutOfStock {
                    requested,
                    available,
                    ..
                })),
            ) => {
                assert!(
                    i64::from(requested) > available,
                    "refused {requested} with {available} available"
                );
            }
            (_, Err(other)) => panic!("unexpected failure: {other}"),
        }
    }
    for code in ["A", "B"] {
        let product = inventory::get(db.connection(inventory::SCHEMA), &sku(code))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (product.available, product.reserved),
            (60 - reserved, reserved),
            "{code}"
        );
    }
    assert!(reserved > 50, "only {reserved} of 60 units were reserved");
}
