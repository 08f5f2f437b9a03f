//! P1: what the transaction fabric costs over hand-written SeaORM.
//!
//! The work is the place-order unit of work: reserve stock for 3 lines, create the
//! order, and one more write in a third boundary (`orchestration`). "hand-written" runs
//! the same domain functions in a transaction begun by hand; "fabric" runs them as
//! steps of a unit of work. Each cell runs for a fixed time, split into four rounds in
//! ABBA order; the table prints
//! transactions per second and the fabric's ratio to hand-written.
//!
//! `cargo run --release -p benches --bin fabric-overhead [SECONDS_PER_CELL]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, Sku};
use orchestration::testing::{Engine, TestDatabase};
use orchestration::{Fabric, Topology, UnitOfWorkError};
use orders::{CustomerId, LineRequest, NewOrder};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait, Value,
};
use uuid::Uuid;

const SKUS: usize = 10;
/// Rounds per cell, alternating which side goes first.
const ROUNDS: usize = 4;

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    Orders(#[from] orders::Error),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    UnitOfWork(#[from] UnitOfWorkError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    HandWritten,
    Fabric,
}

fn sku(i: usize) -> Sku {
    Sku::parse(&format!("BENCH-{i}")).expect("a valid SKU")
}

/// The third write: upsert a row in the `orchestration` boundary.
fn marker(backend: sea_orm::DbBackend) -> &'static str {
    match backend {
        sea_orm::DbBackend::MySql => {
            "REPLACE INTO orchestration.import_cursors (name, position) VALUES (?, ?)"
        }
        _ => {
            "INSERT INTO orchestration.import_cursors (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position"
        }
    }
}

fn order_lines() -> Vec<(Sku, Quantity)> {
    let mut picked: Vec<usize> = (0..SKUS).collect();
    fastrand::shuffle(&mut picked);
    let mut lines: Vec<(Sku, Quantity)> = picked[..3]
        .iter()
        .map(|i| (sku(*i), Quantity::new(1).expect("1 is a quantity")))
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines
}

fn new_order(lines: &[(Sku, Quantity)]) -> NewOrder {
    let requests: Vec<LineRequest> = lines
        .iter()
        .map(|(sku, q)| LineRequest {
            sku: sku.as_str().to_owned(),
            quantity: q.get(),
            unit_price_minor: 100,
            currency: "EUR".to_owned(),
        })
        .collect();
    NewOrder::price(CustomerId::parse("bench").expect("valid"), &requests).expect("a valid order")
}

async fn hand_written(db: &DatabaseConnection, client: usize) -> Result<(), BenchError> {
    let now = Utc::now();
    let lines = order_lines();
    let order = new_order(&lines);
    let id = Uuid::now_v7();
    let reference = id.to_string();
    let tx = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    for (sku, quantity) in &lines {
        inventory::reserve(&tx, sku, *quantity, &reference, now, now).await?;
    }
    orders::create(&tx, id, &order, now).await?;
    let values: Vec<Value> = vec![format!("bench-{client}").into(), 1_i64.into()];
    tx.execute_raw(Statement::from_sql_and_values(
        tx.get_database_backend(),
        marker(tx.get_database_backend()),
        values,
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn through_fabric(fabric: &Fabric, client: usize) -> Result<(), BenchError> {
    let now = Utc::now();
    let lines = order_lines();
    let order = new_order(&lines);
    let id = Uuid::now_v7();
    let reference = id.to_string();
    let backend = fabric.connection(orders::SCHEMA)?.get_database_backend();
    fabric
        .unit_of_work("place_order_bench")
        .run(async |uow| -> Result<(), BenchError> {
            for (sku, quantity) in &lines {
                uow.step(inventory::SCHEMA, "reserve_stock", async |tx| {
                    inventory::reserve(tx, sku, *quantity, &reference, now, now).await
                })
                .await?;
            }
            uow.step(orders::SCHEMA, "create_order", async |tx| {
                orders::create(tx, id, &order, now).await
            })
            .await?;
            let values: Vec<Value> = vec![format!("bench-{client}").into(), 1_i64.into()];
            uow.execute("orchestration", "mark", marker(backend), values)
                .await?;
            Ok(())
        })
        .await?;
    Ok(())
}

impl From<orchestration::FabricError> for BenchError {
    fn from(err: orchestration::FabricError) -> Self {
        Self::Db(DbErr::Custom(err.to_string()))
    }
}

/// Transactions per second of `way` with `clients` concurrent clients for `seconds`.
async fn measure(fabric: &Fabric, way: Way, clients: usize, seconds: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (fabric, done, stop) = (fabric.clone(), Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let db = fabric.connection(orders::SCHEMA).expect("orders").clone();
                while !stop.load(Ordering::Relaxed) {
                    let result = match way {
                        Way::HandWritten => hand_written(&db, client).await,
                        Way::Fabric => through_fabric(&fabric, client).await,
                    };
                    result.expect("a benchmark transaction");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn seed(fabric: &Fabric) {
    let db = fabric.connection(inventory::SCHEMA).expect("inventory");
    for i in 0..SKUS {
        let product = NewProduct {
            sku: sku(i),
            name: ProductName::parse("bench").expect("valid"),
            price: Money::new(100, Currency::parse("EUR").expect("valid")).expect("valid"),
            initial_stock: 1_000_000_000,
        };
        inventory::add_product(db, &product, Utc::now())
            .await
            .expect("seed a product");
    }
}

#[allow(clippy::print_stdout)] // The table is the output.
#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    println!(
        "P1: place-order unit of work (3 reservations + order + 1 write in a third boundary), {seconds} s per cell"
    );
    println!();
    println!("| backend | clients | hand-written tx/s | fabric tx/s | fabric / hand-written |");
    println!("|---|---:|---:|---:|---:|");
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(db) = TestDatabase::create(engine, migrations::all()).await else {
            continue;
        };
        seed(db.fabric()).await;
        for clients in [1, 16] {
            // Four rounds in ABBA order, so that neither side always runs on the
            // larger (later) database or the warmer cache.
            let (mut hand, mut fab) = (0.0, 0.0);
            for round in 0..ROUNDS {
                let cell = seconds / ROUNDS as f64;
                let order = if round % 2 == 0 {
                    [Way::HandWritten, Way::Fabric]
                } else {
                    [Way::Fabric, Way::HandWritten]
                };
                for way in order {
                    let rate = measure(db.fabric(), way, clients, cell).await;
                    match way {
                        Way::HandWritten => hand += rate / ROUNDS as f64,
                        Way::Fabric => fab += rate / ROUNDS as f64,
                    }
                }
            }
            println!(
                "| {engine:?} | {clients} | {hand:.0} | {fab:.0} | {:.3} |",
                fab / hand
            );
        }
    }

    // Two-phase commit: the same unit of work with inventory on a second database.
    let (Some(one), Some(two)) = (
        TestDatabase::create(
            Engine::Postgres,
            [orchestration::schema::boundary(), migrations::orders()],
        )
        .await,
        TestDatabase::create(Engine::Postgres, [migrations::inventory()]).await,
    ) else {
        return;
    };
    let single = TestDatabase::create(Engine::Postgres, migrations::all())
        .await
        .expect("PostgreSQL");
    seed(single.fabric()).await;
    let topology: Topology = one
        .topology()
        .clone()
        .with_override(inventory::SCHEMA, two.topology().default_url().clone());
    let split = Fabric::connect(&topology, migrations::all())
        .await
        .expect("connect the split fabric");
    seed(&split).await;
    println!();
    println!(
        "| PostgreSQL, fabric | clients | one database tx/s | two databases (2PC) tx/s | 2PC / one |"
    );
    println!("|---|---:|---:|---:|---:|");
    for clients in [1, 16] {
        let local = measure(single.fabric(), Way::Fabric, clients, seconds).await;
        let two_phase = measure(&split, Way::Fabric, clients, seconds).await;
        println!(
            "| place order | {clients} | {local:.0} | {two_phase:.0} | {:.3} |",
            two_phase / local
        );
    }
    split.close().await;
}
