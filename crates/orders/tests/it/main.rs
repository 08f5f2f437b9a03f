//! Orders' integration tests, run on SQLite, PostgreSQL and MariaDB.

use chrono::{SubsecRound, Utc};
use orchestration::testing::TestDatabase;
use orders::{CustomerId, Error, LineRequest, NewOrder, OrderStatus};
use uuid::Uuid;

orchestration::engine_tests! {
    boundaries: [migrations::orders()];
    orders_round_trip_with_their_lines,
    lifecycle_rejects_invalid_transitions,
    orders_are_listed_newest_first_by_status_and_customer,
}

fn new_order() -> NewOrder {
    order_for("customer-7")
}

fn order_for(customer: &str) -> NewOrder {
    let line = |sku: &str, quantity, price| LineRequest {
        sku: sku.to_owned(),
        quantity,
        unit_price_minor: price,
        currency: "EUR".to_owned(),
    };
    NewOrder::price(
        CustomerId::parse(customer).unwrap(),
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

async fn orders_are_listed_newest_first_by_status_and_customer(db: TestDatabase) {
    use orders::OrderFilter;
    let conn = db.connection(orders::SCHEMA);
    let now = Utc::now().trunc_subsecs(6);
    let mut ids = Vec::new();
    for i in 0..5 {
        let customer = if i % 2 == 0 { "even" } else { "odd" };
        let id = Uuid::now_v7();
        orders::create(conn, id, &order_for(customer), now)
            .await
            .unwrap();
        ids.push(id);
    }
    orders::confirm(conn, ids[1], now).await.unwrap();
    let listed = |filter: OrderFilter, limit| async move {
        orders::list(conn, &filter, limit)
            .await
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    assert_eq!(listed(OrderFilter::default(), 10).await, newest_first);
    let all = orders::list(conn, &OrderFilter::default(), 10)
        .await
        .unwrap();
    assert!(all.iter().all(|o| o.lines.len() == 2), "lines come along");
    assert_eq!(all[0], orders::get(conn, ids[4]).await.unwrap().unwrap());

    let odd = OrderFilter {
        customer_id: Some(CustomerId::parse("odd").unwrap()),
        ..OrderFilter::default()
    };
    assert_eq!(listed(odd.clone(), 10).await, [ids[3], ids[1]]);
    let confirmed = OrderFilter {
        status: Some(OrderStatus::Confirmed),
        ..OrderFilter::default()
    };
    assert_eq!(listed(confirmed, 10).await, [ids[1]]);
    let pending_odd = OrderFilter {
        status: Some(OrderStatus::Pending),
        ..odd
    };
    assert_eq!(listed(pending_odd, 10).await, [ids[3]]);

    let second_page = OrderFilter {
        before: Some(ids[3]),
        ..OrderFilter::default()
    };
    assert_eq!(listed(second_page, 2).await, [ids[2], ids[1]]);
}
