//! P3: what a durable saga costs over a plain unit of work doing the same work.
//!
//! The work is three steps, each recording one audit entry. "unit of work" runs them
//! as three steps of one unit of work (one transaction). "saga" runs them as three
//! local steps of a saga started with a fresh key: the engine runs them, with the
//! run's insert, their checkpoints and the run's completion, as one unit of work of
//! its own (see ARCHITECTURE.md, the saga invariant). Runs go one after another (one client) and
//! with eight clients; each cell runs for a fixed time in four rounds in ABBA order.
//! The table prints runs per second, the saga's ratio, and the saga's extra time per
//! step. On PostgreSQL it also counts the write transactions of one run of each kind
//! and of one order placement (the placement saga with the simulated gateway): the
//! transaction ids they assign, since only a transaction that writes gets one. Run it
//! with nothing else using the server.
//!
//! `cargo run --release -p benches --bin saga-overhead [SECONDS_PER_CELL]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit::{Action, Actor, NewEntry, Subject};
use chrono::Utc;
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, Sku};
use orchestration::testing::{Engine, TestDatabase};
use orchestration::{
    Fabric, UnitOfWork,
    saga::{LocalStep, RunState, Saga, SagaContext, SagaHandle, StepError},
};
use orders::CustomerId;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use workflows::{PlaceOrder, PlaceOrderCommand, PlaceOrderOutcome, PlaceOrderSettings};

/// Rounds per cell, alternating which side goes first.
const ROUNDS: usize = 4;
const STEPS: [&str; 3] = ["first", "second", "third"];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Input {
    subject: String,
}

fn entry(subject: &str, step: &str) -> NewEntry {
    NewEntry {
        actor: Actor::parse("bench").expect("an actor"),
        action: Action::parse(&format!("bench.{step}")).expect("an action"),
        subject: Subject::parse(subject).expect("a subject"),
        occurred_at: Utc::now(),
        data: serde_json::json!({}),
    }
}

/// Records one audit entry.
struct Record(&'static str);

impl LocalStep<Input> for Record {
    type Output = ();
    const BOUNDARIES: &'static [&'static str] = &[audit::SCHEMA];

    async fn act(
        &self,
        run: &SagaContext<'_, Input>,
        uow: &mut UnitOfWork<StepError>,
    ) -> Result<(), StepError> {
        let entry = entry(&run.input().subject, self.0);
        uow.step(audit::SCHEMA, "record", async |tx| {
            audit::record(tx, &entry)
                .await
                .map_err(StepError::transient)
        })
        .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    UnitOfWork,
    Saga,
}

async fn run_once(fabric: &Fabric, saga: &SagaHandle<Input>, way: Way) {
    let subject = format!("bench:{}", Uuid::now_v7());
    match way {
        Way::UnitOfWork => {
            fabric
                .unit_of_work("bench_three_steps")
                .run(async |uow: &mut UnitOfWork<StepError>| {
                    for step in STEPS {
                        let entry = entry(&subject, step);
                        uow.step(audit::SCHEMA, "record", async |tx| {
                            audit::record(tx, &entry)
                                .await
                                .map_err(StepError::transient)
                        })
                        .await?;
                    }
                    Ok(())
                })
                .await
                .expect("the unit of work commits");
        }
        Way::Saga => {
            let run = saga
                .start(
                    &subject,
                    &Input {
                        subject: subject.clone(),
                    },
                    Duration::from_secs(60),
                )
                .await
                .expect("the saga starts");
            assert_eq!(run.run.state, RunState::Completed, "{run:?}");
        }
    }
}

/// Runs per second with `clients` running back to back for `seconds`.
async fn measure(
    fabric: &Fabric,
    saga: &SagaHandle<Input>,
    way: Way,
    clients: usize,
    seconds: f64,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (fabric, saga) = (fabric.clone(), saga.clone());
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    run_once(&fabric, &saga, way).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[allow(clippy::print_stdout)] // The table is the output.
#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    println!(
        "P3: three audit writes as one unit of work vs. a three-step saga, {seconds} s per cell"
    );
    println!();
    println!(
        "| backend | clients | unit of work runs/s | saga runs/s | saga / unit of work | saga overhead per step |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut writes = None;
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(db) = TestDatabase::create(engine, migrations::all()).await else {
            continue;
        };
        let saga = Saga::new("bench_three_steps")
            .local(STEPS[0], Record(STEPS[0]))
            .local(STEPS[1], Record(STEPS[1]))
            .local(STEPS[2], Record(STEPS[2]));
        let saga = db.fabric().sagas().register(saga).expect("register");
        for clients in [1, 8] {
            let (mut plain, mut durable) = (0.0, 0.0);
            for round in 0..ROUNDS {
                let cell = seconds / ROUNDS as f64;
                let order = if round % 2 == 0 {
                    [Way::UnitOfWork, Way::Saga]
                } else {
                    [Way::Saga, Way::UnitOfWork]
                };
                for way in order {
                    let rate = measure(db.fabric(), &saga, way, clients, cell).await;
                    match way {
                        Way::UnitOfWork => plain += rate / ROUNDS as f64,
                        Way::Saga => durable += rate / ROUNDS as f64,
                    }
                }
            }
            // Per run, per client: the saga's extra latency spread over its steps.
            let per_step_ms = (clients as f64 / durable - clients as f64 / plain) * 1000.0 / 3.0;
            println!(
                "| {engine:?} | {clients} | {plain:.0} | {durable:.0} | {:.2} | {per_step_ms:.2} ms |",
                durable / plain
            );
        }
        if engine == Engine::Postgres {
            let plain =
                write_transactions(&db, 100, || run_once(db.fabric(), &saga, Way::UnitOfWork))
                    .await;
            let durable =
                write_transactions(&db, 100, || run_once(db.fabric(), &saga, Way::Saga)).await;
            writes = Some((plain, durable, placement_writes().await));
        }
    }
    if let Some((plain, durable, placement)) = writes {
        println!();
        println!("Write transactions per run on PostgreSQL (100 runs one after another):");
        println!();
        println!("| work | write transactions per run |");
        println!("|---|---:|");
        println!("| three steps as one unit of work | {plain:.2} |");
        println!("| three-step saga | {durable:.2} |");
        println!("| order placement (hold stock, charge, confirm) | {placement:.2} |");
    }
}

/// The transaction ids the server assigned so far: only a transaction that writes
/// gets one.
async fn next_transaction_id(db: &TestDatabase) -> u64 {
    let connection = db.fabric().connection(audit::SCHEMA).expect("audit");
    let row = connection
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next",
        ))
        .await
        .expect("the snapshot")
        .expect("a row");
    let next: String = row.try_get("", "next").expect("a transaction id");
    next.parse().expect("a number")
}

/// Write transactions per call of `work`, over `runs` calls one after another.
async fn write_transactions<F: Future<Output = ()>>(
    db: &TestDatabase,
    runs: u32,
    work: impl Fn() -> F,
) -> f64 {
    let before = next_transaction_id(db).await;
    for _ in 0..runs {
        work().await;
    }
    let after = next_transaction_id(db).await;
    (after - before) as f64 / f64::from(runs)
}

/// Write transactions per order placement: one product with ample stock, the
/// simulated gateway always approving, one line per order.
async fn placement_writes() -> f64 {
    let db = TestDatabase::create(Engine::Postgres, migrations::all())
        .await
        .expect("PostgreSQL");
    let fabric = db.fabric();
    let catalog = fabric.connection(inventory::SCHEMA).expect("inventory");
    let product = NewProduct {
        sku: Sku::parse("BENCH-1").expect("a SKU"),
        name: ProductName::parse("Bench").expect("a name"),
        price: Money::new(100, Currency::parse("EUR").expect("a currency")).expect("a price"),
        initial_stock: 1_000_000,
    };
    inventory::add_product(catalog, &product, Utc::now())
        .await
        .expect("the product");
    let gateway = payments::SimulatedGateway::new(
        fabric
            .connection(payments::SCHEMA)
            .expect("payments")
            .clone(),
        payments::SimulatedGatewayOptions::default(),
    );
    let settings = PlaceOrderSettings {
        hold: chrono::Duration::minutes(15),
        gateway: Arc::new(gateway),
        policy: payments::PaymentPolicy {
            verification_threshold_minor: i64::MAX,
        },
        charge_retry: orchestration::saga::RetryPolicy::default(),
    };
    let placing = PlaceOrder::register(fabric, settings).expect("the placement saga");
    let command = PlaceOrderCommand {
        customer_id: CustomerId::parse("bench").expect("a customer"),
        lines: vec![(product.sku.clone(), Quantity::new(1).expect("a quantity"))],
    };
    write_transactions(&db, 100, || async {
        let placement = placing
            .place(None, &command, Duration::from_secs(60))
            .await
            .expect("the placement");
        assert!(
            matches!(placement.outcome, PlaceOrderOutcome::Placed(_)),
            "{placement:?}"
        );
    })
    .await
}
