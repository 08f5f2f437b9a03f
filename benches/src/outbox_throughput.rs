//! P2: the outbox, from emit to handled.
//!
//! Throughput: a backlog of `OrderPlaced` events (emitted in units of work of 100) is
//! drained by the real audit subscriber, which records one audit entry per event in
//! its own unit of work with the inbox record. *Switchyard* is the outbox dispatcher
//! (claim batches, per-key order, inbox, batched completion); *hand-written* is a
//! minimal SeaORM queue over the same messages: `concurrency` loops each claim a batch
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and deliver each message in one
//! transaction that records the entry and marks the message done (no per-key order,
//! no retries, no inbox).
//!
//! Wake-up latency: one event at a time, emitted by a second fabric (another
//! instance) or by the dispatcher's own; the time from the emitting commit to the
//! handler, with `LISTEN/NOTIFY`, in-process wake-up, or polling every second.
//!
//! `cargo run --release -p benches --bin outbox-throughput [EVENTS] [SAMPLES]`

use std::time::{Duration, Instant};

use chrono::Utc;
use orchestration::testing::{Engine, TestDatabase};
use orchestration::{
    Fabric, UnitOfWork, UnitOfWorkError,
    dispatch::{Dispatcher, DispatcherOptions, Handler, HandlerError},
    host::{Host, Policy},
    outbox::{Envelope, EventType},
};
use orders::{OrderPlaced, PlacedLine};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use tokio::sync::mpsc;
use uuid::Uuid;
use workflows::ORDER_PLACED;

fn event() -> OrderPlaced {
    OrderPlaced {
        order_id: Uuid::now_v7(),
        customer_id: "bench".to_owned(),
        currency: "EUR".to_owned(),
        total_minor: 300,
        lines: vec![PlacedLine {
            sku: "BENCH-1".to_owned(),
            quantity: 3,
            unit_price_minor: 100,
        }],
        placed_at: Utc::now(),
    }
}

/// Emits `events` `OrderPlaced` events, 100 per unit of work.
async fn emit_backlog(fabric: &Fabric, events: usize) {
    for chunk in 0..events.div_ceil(100) {
        let n = (events - chunk * 100).min(100);
        fabric
            .unit_of_work("emit_backlog")
            .run(async |uow: &mut UnitOfWork<UnitOfWorkError>| {
                for _ in 0..n {
                    let placed = event();
                    uow.emit(orders::SCHEMA, ORDER_PLACED, placed.ordering_key(), &placed)?;
                }
                Ok(())
            })
            .await
            .expect("emit");
    }
}

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    row.try_get("", "n").expect("n")
}

async fn audited(fabric: &Fabric) -> i64 {
    let db = fabric.connection(audit::SCHEMA).expect("audit");
    scalar(db, "SELECT COUNT(*) AS n FROM audit.entries").await
}

async fn wait_for(fabric: &Fabric, events: usize) {
    while audited(fabric).await < events as i64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Events per second for the outbox dispatcher to drain `events`.
async fn switchyard(engine: Engine, concurrency: usize, events: usize) -> Option<f64> {
    let db = TestDatabase::create(engine, migrations::all()).await?;
    let fabric = db.fabric();
    workflows::subscribe(fabric, &workflows::MailSettings::default()).expect("subscribe");
    emit_backlog(fabric, events).await;
    let mut host = Host::new(fabric.databases());
    let options = DispatcherOptions {
        concurrency,
        handler_timeout: Duration::from_secs(2),
        ..DispatcherOptions::default()
    };
    host.add(Dispatcher::new(fabric.events(), options), Policy::StopHost)
        .expect("add");
    let started = Instant::now();
    let running = host.start();
    wait_for(fabric, events).await;
    let elapsed = started.elapsed();
    running.shutdown().await;
    Some(events as f64 / elapsed.as_secs_f64())
}

/// Events per second for the hand-written queue to drain `events`.
async fn hand_written(engine: Engine, concurrency: usize, events: usize) -> Option<f64> {
    let db = TestDatabase::create(engine, migrations::all()).await?;
    let fabric = db.fabric();
    workflows::subscribe(fabric, &workflows::MailSettings::default()).expect("subscribe");
    emit_backlog(fabric, events).await;
    let connection = fabric.connection(orders::SCHEMA).expect("orders").clone();
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let connection = connection.clone();
        loops.spawn(async move {
            drain_by_hand(&connection)
                .await
                .expect("hand-written queue")
        });
    }
    while loops.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    assert_eq!(audited(fabric).await, events as i64);
    Some(events as f64 / elapsed.as_secs_f64())
}

fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    }
}

/// Claims batches of 16 and delivers each message in its own transaction until none
/// is left.
async fn drain_by_hand(db: &DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
    let backend = db.get_database_backend();
    let (claim, done) = match backend {
        DbBackend::Postgres => (
            "SELECT id, payload FROM outbox.messages WHERE status = 'pending' AND claimed_by IS NULL \
             ORDER BY id LIMIT 16 FOR UPDATE SKIP LOCKED",
            "UPDATE outbox.messages SET status = 'done' WHERE id = $1",
        ),
        _ => (
            "SELECT id, payload FROM outbox.messages WHERE status = 'pending' AND claimed_by IS NULL \
             ORDER BY id LIMIT 16",
            "UPDATE outbox.messages SET status = 'done' WHERE id = $1",
        ),
    };
    let claim_by = "UPDATE outbox.messages SET claimed_by = 'hand' WHERE id = $1";
    loop {
        let tx = db.begin_with_options(immediate()).await?;
        let rows = tx
            .query_all_raw(Statement::from_string(backend, claim))
            .await?;
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("", "id")?;
            let payload: String = row.try_get("", "payload")?;
            tx.execute_raw(Statement::from_sql_and_values(
                backend,
                claim_by,
                [id.clone().into()],
            ))
            .await?;
            batch.push((id, payload));
        }
        tx.commit().await?;
        if batch.is_empty() {
            return Ok(());
        }
        for (id, payload) in batch {
            let placed: OrderPlaced = serde_json::from_str(&payload)?;
            let entry = audit::NewEntry {
                actor: audit::Actor::parse(&format!("customer:{}", placed.customer_id))?,
                action: audit::Action::parse("order.placed")?,
                subject: audit::Subject::parse(&format!("order:{}", placed.order_id))?,
                occurred_at: placed.placed_at,
                data: serde_json::json!({ "total_minor": placed.total_minor, "lines": placed.lines }),
            };
            let tx = db.begin_with_options(immediate()).await?;
            audit::record(&tx, &entry).await?;
            tx.execute_raw(Statement::from_sql_and_values(backend, done, [id.into()]))
                .await?;
            tx.commit().await?;
        }
    }
}

const PROBE: EventType<u64> = EventType::new("bench.probe");

/// Tells the benchmark when it ran.
struct Probe(mpsc::UnboundedSender<Instant>);

impl Handler<u64> for Probe {
    async fn handle(
        &self,
        _event: u64,
        _envelope: &Envelope,
        _uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let _ = self.0.send(Instant::now());
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Wake {
    /// Emitted by another instance; the dispatcher listens.
    Notify,
    /// Emitted by the dispatcher's own process.
    InProcess,
    /// Emitted by another instance; the dispatcher polls.
    Poll,
}

/// Emit-commit-to-handler latencies of `samples` events, sorted.
async fn latencies(engine: Engine, wake: Wake, samples: usize) -> Option<Vec<Duration>> {
    let db = TestDatabase::create(engine, migrations::all()).await?;
    let dispatching = db.fabric().clone();
    let (sender, mut handled) = mpsc::unbounded_channel();
    dispatching
        .events()
        .subscribe(PROBE, "probe", Probe(sender))
        .expect("subscribe");
    let emitting = match wake {
        Wake::InProcess => dispatching.clone(),
        Wake::Notify | Wake::Poll => {
            let other = Fabric::connect(db.topology(), migrations::all())
                .await
                .expect("a second instance");
            let (unused, _) = mpsc::unbounded_channel();
            other
                .events()
                .subscribe(PROBE, "probe", Probe(unused))
                .expect("subscribe");
            other
        }
    };
    let mut host = Host::new(dispatching.databases());
    let options = DispatcherOptions {
        listen: matches!(wake, Wake::Notify),
        ..DispatcherOptions::default()
    };
    host.add(
        Dispatcher::new(dispatching.events(), options),
        Policy::StopHost,
    )
    .expect("add");
    let running = host.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut measured = Vec::with_capacity(samples);
    for i in 0..samples {
        emitting
            .unit_of_work("probe")
            .run(async |uow: &mut UnitOfWork<UnitOfWorkError>| {
                uow.emit(orders::SCHEMA, PROBE, "probe", &(i as u64))
            })
            .await
            .expect("emit");
        let committed = Instant::now();
        let at = handled.recv().await.expect("handled");
        measured.push(at.saturating_duration_since(committed));
        // Land the next emit at a random point of the polling interval (the loop
        // would otherwise emit just after each poll).
        let pause = match wake {
            Wake::Poll => fastrand::u64(1..1_000),
            Wake::Notify | Wake::InProcess => fastrand::u64(1..20),
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    running.shutdown().await;
    measured.sort();
    Some(measured)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[allow(clippy::print_stdout)] // The tables are the output.
#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let samples: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    println!("P2 throughput: drain a backlog of {events} OrderPlaced events into audit entries");
    println!();
    println!(
        "| backend | concurrency | hand-written events/s | switchyard events/s | switchyard / hand-written |"
    );
    println!("|---|---:|---:|---:|---:|");
    for engine in [Engine::Sqlite, Engine::Postgres] {
        for concurrency in [1, 4] {
            let Some(hand) = hand_written(engine, concurrency, events).await else {
                continue;
            };
            let Some(ours) = switchyard(engine, concurrency, events).await else {
                continue;
            };
            println!(
                "| {engine:?} | {concurrency} | {hand:.0} | {ours:.0} | {:.2} |",
                ours / hand
            );
        }
    }
    println!();
    println!(
        "P2 wake-up: commit of the emitting unit of work to the handler, {samples} events one at a time (poll interval 1 s)"
    );
    println!();
    println!("| backend | wake-up | p50 | p99 |");
    println!("|---|---|---:|---:|");
    for (engine, wake) in [
        (Engine::Sqlite, Wake::InProcess),
        (Engine::Sqlite, Wake::Poll),
        (Engine::Postgres, Wake::Notify),
        (Engine::Postgres, Wake::InProcess),
        (Engine::Postgres, Wake::Poll),
    ] {
        let Some(sorted) = latencies(engine, wake, samples).await else {
            continue;
        };
        let label = match wake {
            Wake::Notify => "LISTEN/NOTIFY (other instance)",
            Wake::InProcess => "in-process (same instance)",
            Wake::Poll => "polling (other instance)",
        };
        println!(
            "| {engine:?} | {label} | {:.2?} | {:.2?} |",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99)
        );
    }
}
