//! Orders' integration tests, run on SQLite, PostgreSQL and MariaDB.

use chrono::{SubsecRound, Utc};
use orchestration::testing::TestDatabase;
use orders::{CustomerId, Error, LineRequest, NewOrder, OrderStatus};
use uuid::Uuid;

orchestration::engine_tests! {
    boundaries: [migrations::orders()];
    orders_round_trip_with_their_lines,
    lifecycle_rejects_invalid_transitions,
}

fn new_order() -> NewOrder {
    let line = |sku: &str, quantity, price| LineRequest {
        sku: sku.to_owned(),
        quantity,
        unit_price_minor: price,
        currency: "EUR".to_owned(),
    };
    NewOrder::price(
        CustomerId::parse("customer-7").unwrap(),
        &[line("A-1", 2, 1250), line("B-2", 1, 999)],
    )
    .unwrap()
}

async fn orders_round_trip_with_their_lines(db: TestDatabase) {
    let conn = db.connection(orders::SCHEMA);
    let now = Utc::now().trunc_subsecs(6);
    let id = Uuid::now_v7();
    let created = orders::create(conn, id, &new_order(), now).await.unwrap();
    assert_eq!(created.total_minor, 2 * 1250 + 999);
    assert_eq!(created.status, OrderStatus::Pending);
    let stored = orders::get(conn, id).await.unwrap().unwrap();
    assert_eq!(stored, created);
    assert!(orders::get(conn, Uuid::now_v7()).await.unwrap().is_none());
    let err = orders::create(conn, id, &new_order(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateOrder { .. }), "{err}");
}

async fn lifecycle_rejects_invalid_transitions(db: TestDatabase) {
    let conn = db.connection(orders::SCHEMA);
    let now = Utc::now();
    let id = Uuid::now_v7();
    orders::create(conn, id, &new_order(), now).await.unwrap();

    let confirmed = orders::confirm(conn, id, now).await.unwrap();
    assert_eq!(confirmed.status, OrderStatus::Confirmed);
    let err = orders::confirm(conn, id, now).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: OrderStatus::Confirmed,
                to: OrderStatus::Confirmed,
                ..
            }
        ),
        "{err}"
    );
    let cancelled = orders::cancel(conn, id, now).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    let err = orders::confirm(conn, id, now).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: OrderStatus::Cancelled,
                ..
            }
        ),
        "{err}"
    );
    let err = orders::cancel(conn, Uuid::now_v7(), now).await.unwrap_err();
    assert!(matches!(err, Error::UnknownOrder { .. }), "{err}");
}
