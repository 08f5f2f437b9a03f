//! The binary under load on a split topology (orders and the coordinator log on one
//! PostgreSQL database, inventory on another): SIGKILLed in the middle of 300
//! concurrent placements, then restarted on the same databases, placements of the
//! locked product resume within seconds and every placement, asked again with its
//! key, ends placed or refused, with stock conserved and no prepared transaction left.
//! And a shutdown while every connection waits on a lock ends in time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestration::testing::{Engine, TestDatabase};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use super::{
    admin_client, drain, exit_drained, open_admin, read_until, served_at, signal, start, switchyard,
};

const SKU: &str = "KILL-LOAD";
const STOCK: i64 = 250;
const PLACEMENTS: usize = 300;
const CONCURRENCY: usize = 40;

/// The two databases of the split topology, empty: the binary migrates them.
async fn split() -> Option<(TestDatabase, TestDatabase)> {
    let main = TestDatabase::create(Engine::Postgres, [orchestration::schema::boundary()]).await?;
    let inventory = TestDatabase::create(Engine::Postgres, [migrations::inventory()]).await?;
    Some((main, inventory))
}

fn split_command(main: &TestDatabase, inventory: &TestDatabase) -> tokio::process::Command {
    let mut command = switchyard(&main.topology().default_url().connection_string());
    command.env(
        "SWITCHYARD_DATABASE__BOUNDARIES__INVENTORY__URL",
        inventory.topology().default_url().connection_string(),
    );
    command
}

/// Creates product [`SKU`] with `stock` units.
async fn create_product(client: &reqwest::Client, base: &str, stock: i64) {
    let created = client
        .post(format!("{base}/api/products"))
        .json(&json!({"sku": SKU, "name": SKU, "price_minor": 100, "currency": "EUR", "stock": stock}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
}

/// `POST /api/orders` of one unit with `key`: the status, or `None` if the request
/// got no answer (the process died).
async fn place(client: &reqwest::Client, base: &str, key: &str) -> Option<(StatusCode, Value)> {
    let response = client
        .post(format!("{base}/api/orders"))
        .header("Idempotency-Key", key)
        .json(&json!({"lines": [{"sku": SKU, "quantity": 1}]}))
        .send()
        .await
        .ok()?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Some((status, body))
}

/// Asks for `key`'s placement until it is over: `true` if it was placed. Fails the
/// test on an answer other than 201, 202 or 409, or if it is not over by `deadline`.
async fn placed(client: &reqwest::Client, base: &str, key: &str, deadline: Instant) -> bool {
    let (status, body) = place(client, base, key).await.expect("the server answers");
    match status {
        StatusCode::CREATED => return true,
        StatusCode::CONFLICT => return false,
        StatusCode::ACCEPTED => {}
        other => panic!("{key}: {other}: {body}"),
    }
    let url = format!(
        "{base}{}",
        body["status_url"].as_str().expect("a status URL")
    );
    loop {
        let shown: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        match shown["status"].as_str() {
            Some("confirmed") => return true,
            Some("refused") => return false,
            Some("placing") if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => panic!("{key} did not finish in time: {shown}"),
        }
    }
}

/// Places `keys`, [`CONCURRENCY`] at a time, each to its end; how many were placed.
async fn place_all(
    client: &reqwest::Client,
    base: &str,
    keys: Vec<String>,
    deadline: Instant,
) -> usize {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut requests = tokio::task::JoinSet::new();
    for key in keys {
        let (client, base, permits) = (client.clone(), base.to_owned(), Arc::clone(&permits));
        requests.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            placed(&client, &base, &key, deadline).await
        });
    }
    requests
        .join_all()
        .await
        .into_iter()
        .filter(|placed| *placed)
        .count()
}

fn key(i: usize) -> String {
    format!("kill-{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_under_load_then_restarted_every_placement_ends_and_stock_is_conserved() {
    let Some((main, inventory)) = split().await else {
        return;
    };
    open_admin(split_command(&main, &inventory)).await;
    let (mut first, mut lines) = start(split_command(&main, &inventory));
    let mut seen = Vec::new();
    read_until(&mut lines, "serving", &mut seen).await;
    let base = format!("http://{}", served_at(&seen));
    let first_log = drain(lines, seen);
    let client = admin_client(&base).await;
    create_product(&client, &base, STOCK).await;

    // 300 placements, 40 at a time; the process is SIGKILLed once 100 have answered.
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..PLACEMENTS {
        let (client, base, permits) = (client.clone(), base.clone(), Arc::clone(&permits));
        requests.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            place(&client, &base, &key(i)).await
        });
    }
    let mut answered = 0;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    while let Some(outcome) = requests.join_next().await {
        let Some((status, body)) = outcome.unwrap() else {
            continue;
        };
        assert!(
            [
                StatusCode::CREATED,
                StatusCode::ACCEPTED,
                StatusCode::CONFLICT
            ]
            .contains(&status),
            "{status}: {body}"
        );
        *statuses.entry(status.as_u16()).or_default() += 1;
        answered += 1;
        if answered == 100 {
            first.kill().await.unwrap(); // SIGKILL
        }
    }
    first_log.await.unwrap();
    assert!(answered >= 100, "only {answered} answered before the kill");

    // The same databases, a new process.
    let (second, mut lines) = start(split_command(&main, &inventory));
    let mut seen = Vec::new();
    read_until(&mut lines, "serving", &mut seen).await;
    let restarted = Instant::now();
    let base = format!("http://{}", served_at(&seen));
    let second_log = drain(lines, seen);
    let deadline = restarted + Duration::from_secs(30);
    let mut fresh = 0;
    while !placed(&client, &base, &format!("after-restart-{fresh}"), deadline).await {
        fresh += 1;
        assert!(Instant::now() < deadline, "no placement after the restart");
    }
    let resumed = restarted.elapsed();

    // Every placement asked again with its key ends, placed or refused, within a
    // minute: the runs the killed process was driving are taken over as soon as its
    // heartbeat is stale, not when their lease (a minute) runs out.
    let deadline = Instant::now() + Duration::from_secs(60);
    let confirmed = place_all(&client, &base, (0..PLACEMENTS).map(key).collect(), deadline).await;
    let finished = restarted.elapsed();
    eprintln!(
        "killed after {answered} answers {statuses:?}; after the restart the first placement \
         was confirmed in {resumed:.1?}; all {PLACEMENTS} ended {finished:.1?} after the \
         restart, {confirmed} placed"
    );
    assert!(
        resumed < Duration::from_secs(20),
        "placements resumed only after {resumed:?}"
    );
    signal(&second, "TERM");
    let (status, seen) = exit_drained(second, second_log).await;
    assert!(status.success(), "{status}:\n{}", seen.join("\n"));

    // Conserved: each placed order holds its one committed unit, nothing else is held.
    let placed_orders = i64::try_from(confirmed + 1).unwrap();
    let inventory_db = inventory.connection(inventory::SCHEMA);
    let count = |db: &sea_orm::DatabaseConnection, sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    let available = count(
        inventory_db,
        "SELECT available::bigint FROM inventory.stock_levels",
    )
    .await;
    let reserved = count(
        inventory_db,
        "SELECT reserved::bigint FROM inventory.stock_levels",
    )
    .await;
    let held = count(
        inventory_db,
        "SELECT COALESCE(SUM(quantity), 0)::bigint FROM inventory.reservations \
         WHERE status IN ('held', 'committed')",
    )
    .await;
    let main_db = main.connection(orchestration::COORDINATOR_BOUNDARY);
    let lines_ordered = count(main_db, "SELECT COUNT(*)::bigint FROM orders.order_lines").await;
    assert_eq!(
        (available + reserved, reserved),
        (STOCK, held),
        "stock conserved"
    );
    assert_eq!(
        lines_ordered, placed_orders,
        "one order per placement placed"
    );
    assert_eq!(
        reserved, placed_orders,
        "every placed unit reserved, nothing else"
    );
    for db in [main_db, inventory_db] {
        let prepared = count(
            db,
            "SELECT COUNT(*)::bigint FROM pg_prepared_xacts WHERE database = current_database()",
        )
        .await;
        assert_eq!(prepared, 0, "prepared transactions left");
    }
}

/// A SIGTERM while every request and worker waits on a lock that is never released
/// (the lock timeout set longer than the test): the process still ends within the
/// shutdown timeout plus a few seconds, naming what it abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_in_time_while_every_connection_waits_on_a_lock() {
    let Some(db) = TestDatabase::create(Engine::Postgres, migrations::all()).await else {
        return;
    };
    let mut command = switchyard(&db.topology().default_url().connection_string());
    command
        .env("SWITCHYARD_DATABASE__LOCK_TIMEOUT", "10m")
        .env("SWITCHYARD_WORKERS__SHUTDOWN_TIMEOUT", "2s");
    open_admin(switchyard(&db.topology().default_url().connection_string())).await;
    let (child, mut lines) = start(command);
    let mut seen = Vec::new();
    read_until(&mut lines, "serving", &mut seen).await;
    let base = format!("http://{}", served_at(&seen));
    let log = drain(lines, seen);
    let client = admin_client(&base).await;
    create_product(&client, &base, 10).await;

    let inventory_db = db.connection(inventory::SCHEMA);
    let lock = sea_orm::TransactionTrait::begin(inventory_db)
        .await
        .unwrap();
    lock.execute_unprepared("LOCK TABLE inventory.stock_levels IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut stuck = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (client, base) = (client.clone(), base.clone());
        stuck.spawn(async move { place(&client, &base, &format!("stuck-{i}")).await });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = Instant::now();
    signal(&child, "TERM");
    let (status, seen) = exit_drained(child, log).await;
    let took = stopping.elapsed();
    lock.rollback().await.unwrap();
    stuck.abort_all();
    let log = seen.join("\n");
    eprintln!("stopped in {took:.1?} with every connection waiting on a lock");
    assert!(
        took < Duration::from_secs(2 + 3 + 4),
        "took {took:?}:\n{log}"
    );
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("requests still in flight"), "{log}");
}
