//! Placements under load on a split topology (orders and the coordinator log on one
//! PostgreSQL database, inventory on another), so that every placement's steps commit
//! by two-phase commit and their prepared transactions hold the stock row that all the
//! others wait for. 300 placements, 40 at a time, of one product: every request ends
//! 201 or 409, or 202 and then finished within 60 s; no prepared transaction is left;
//! stock is conserved and never oversold.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestration::testing::{Engine, TestDatabase};
use orchestration::{Fabric, Topology};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard::Config;
use tests::{StoreSnapshot, TestApp};

const SKU: &str = "LOAD-1";
const STOCK: i64 = 250;
const PLACEMENTS: usize = 300;
const CONCURRENCY: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_placements_across_two_databases_all_finish() {
    let Some((orders_db, inventory_db)) = tests::split_postgres().await else {
        return;
    };
    let orders_url = orders_db.topology().default_url().clone();
    let inventory_url = inventory_db.topology().default_url().clone();
    let mut config = Config::default();
    config.database.url = orders_url.connection_string();
    config.database.boundaries.insert(
        inventory::SCHEMA.to_owned(),
        switchyard::config::BoundaryConfig {
            url: inventory_url.connection_string(),
        },
    );
    let app = TestApp::spawn_with(config).await;
    let client = app.http.clone();
    app.create_product(SKU, STOCK).await;

    let started = Instant::now();
    let outcomes = place_all(&app, &client).await;
    let burst = started.elapsed();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (status, _) in &outcomes {
        *statuses.entry(status.as_u16()).or_default() += 1;
    }
    // Each 202 must finish within 60 s of the burst.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut confirmed = statuses.get(&201).copied().unwrap_or_default();
    for (status, location) in &outcomes {
        if *status != StatusCode::ACCEPTED {
            continue;
        }
        let location = location.as_deref().expect("a 202 has a status URL");
        loop {
            let shown = app.get(location).await;
            match shown["status"].as_str() {
                Some("confirmed") => {
                    confirmed += 1;
                    break;
                }
                Some("refused") => break,
                Some("placing") if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => panic!("a placement did not finish in time: {shown}; statuses {statuses:?}"),
            }
        }
    }
    eprintln!(
        "{PLACEMENTS} placements, {CONCURRENCY} at a time: {statuses:?} in {burst:.1?}; \
         all finished {:.1?} after the start; {confirmed} confirmed",
        started.elapsed()
    );

    let topology = Topology::new(orders_url).with_override(inventory::SCHEMA, inventory_url);
    let fabric = Fabric::connect(&topology, migrations::all()).await.unwrap();
    assert_eq!(
        tests::prepared_transactions(&fabric).await,
        0,
        "prepared transactions remain"
    );
    let snapshot = StoreSnapshot::read(&fabric).await;
    let initial = BTreeMap::from([(SKU.to_owned(), STOCK)]);
    snapshot.check(&initial).unwrap();
    assert_eq!(snapshot.order_count(), confirmed);
    assert_eq!(
        i64::try_from(confirmed).unwrap(),
        STOCK.min(i64::try_from(PLACEMENTS).unwrap()),
        "every unit that could be sold was sold"
    );
    fabric.close().await;
    app.stop().await;
}

/// Places [`PLACEMENTS`] orders of one unit, [`CONCURRENCY`] at a time; each answer's
/// status and `Location`. Any answer other than 201, 202 or 409 fails the test.
async fn place_all(app: &TestApp, client: &reqwest::Client) -> Vec<(StatusCode, Option<String>)> {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..PLACEMENTS {
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let request = client
            .post(app.url("/api/orders"))
            .header("Idempotency-Key", format!("load-{i}"))
            .json(&json!({"lines": [{"sku": SKU, "quantity": 1}]}));
        requests.spawn(async move {
            let response = request.send().await.expect("the server answers");
            drop(permit);
            let status = response.status();
            let location = response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                [
                    StatusCode::CREATED,
                    StatusCode::ACCEPTED,
                    StatusCode::CONFLICT
                ]
                .contains(&status),
                "{status}: {body}"
            );
            (status, location)
        });
    }
    requests.join_all().await
}

/// The app on its own PostgreSQL database with a 300 ms lock timeout (and `configure`
/// applied), product [`SKU`] in stock, and a transaction of another fabric holding
/// its stock row's lock until it is rolled back. `None` when PostgreSQL is
/// unreachable outside CI.
async fn with_the_stock_row_locked(
    configure: impl FnOnce(&mut Config),
) -> Option<(TestApp, Fabric, sea_orm::DatabaseTransaction, TestDatabase)> {
    let db = TestDatabase::create(Engine::Postgres, [orchestration::schema::boundary()]).await?;
    let mut config = Config::default();
    config.database.url = db.topology().default_url().connection_string();
    config.database.lock_timeout = Duration::from_millis(300);
    configure(&mut config);
    let app = TestApp::spawn_with(config).await;
    app.create_product(SKU, 5).await;
    let fabric = Fabric::connect(db.topology(), migrations::all())
        .await
        .unwrap();
    let lock = sea_orm::TransactionTrait::begin(fabric.connection(inventory::SCHEMA).unwrap())
        .await
        .unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &lock,
        "SELECT * FROM inventory.stock_levels FOR UPDATE",
    )
    .await
    .unwrap();
    Some((app, fabric, lock, db))
}

/// A placement whose stock row is locked by another transaction for longer than
/// `database.lock_timeout`: its hold step fails as a transient error instead of
/// waiting, is retried, and the placement completes once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_longer_than_the_lock_timeout_is_retried_not_waited_out() {
    let Some((app, fabric, lock, _db)) = with_the_stock_row_locked(|config| {
        config.orders.placement_wait = Duration::from_secs(20);
    })
    .await
    else {
        return;
    };
    let placing = tokio::spawn({
        let request = app
            .http
            .post(app.url("/api/orders"))
            .json(&json!({"lines": [{"sku": SKU, "quantity": 1}]}));
        async move { request.send().await.unwrap() }
    });
    // Held for several lock timeouts: the step fails and is retried meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = fabric
        .sagas()
        .runs(&orchestration::saga::RunFilter::default())
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    let run = &running[0];
    assert!(
        run.attempts > 0
            && run
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("lock timeout")),
        "{run:?}"
    );
    lock.rollback().await.unwrap();
    let response = placing.await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    fabric.close().await;
    app.stop().await;
}

/// A request that waits on a lock longer than `database.lock_timeout` is answered 503
/// with `Retry-After` (the lock may be gone on the next try), not 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_blocked_past_the_lock_timeout_is_a_503_with_retry_after() {
    let Some((app, fabric, lock, _db)) = with_the_stock_row_locked(|_| {}).await else {
        return;
    };
    let response = app
        .http
        .post(app.url(&format!("/api/products/{SKU}/restock")))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["type"], "urn:switchyard:problem:unavailable", "{body}");
    assert_eq!(retry_after.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
    lock.rollback().await.unwrap();
    fabric.close().await;
    app.stop().await;
}
