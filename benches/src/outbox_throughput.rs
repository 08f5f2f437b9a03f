//! P2: the outbox, from emit to handled.
//!
//! Drain, no-op subscriber: a backlog of `EVENTS` events, each emitted in its own unit
//! of work with its own ordering key, drained by a subscriber that does nothing.
//! Drain, audit subscriber: a backlog of `OrderPlaced` events (units of work of 100)
//! drained by the real audit subscriber, which records one audit entry per event in
//! its own unit of work with the inbox record. *Switchyard* is the outbox dispatcher
//! (claims of due heads, per-key order, inbox, completion in the handler's
//! transaction); *hand-written* is a minimal SeaORM queue over the same messages:
//! `concurrency` loops each claim 16 (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and
//! deliver each message in one transaction that records the entry (audit) and marks
//! the message done (no per-key order, no retries, no inbox).
//!
//! Backlog curve: the no-op drain at concurrency 16 on PostgreSQL for each backlog in
//! `CURVE` (emitted 100 to a unit of work, each event still with its own key), once
//! with the outbox tables analyzed and once with autovacuum off and no statistics.
//! SQLite drains a tenth of `EVENTS`.
//!
//! Pickup latency: events emitted at 200 a second, by a second fabric (another
//! instance, woken by `LISTEN/NOTIFY`) or by the dispatcher's own process; the time
//! from the emitting commit to the handler's start, at concurrency 1 and 16.
//!
//! `cargo run --release -p benches --bin outbox-throughput [EVENTS] [SAMPLES] [CURVE,…]`
//! (defaults 20000, 1000, 1000,10000,100000)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use orchestration::testing::{Engine, TestDatabase};
use orchestration::{
    Fabric, UnitOfWork, UnitOfWorkError,
    dispatch::{Dispatcher, DispatcherOptions, Handler, HandlerError},
    host::{Host, Policy, RunningHost},
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
async fn emit_orders(fabric: &Fabric, events: usize) {
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

const NOOP: EventType<u64> = EventType::new("bench.noop");

/// Emits `events` no-op events, each with its own key, `per_unit` to a unit of work,
/// from 8 tasks at once (one on SQLite, whose writers wait for one another by
/// sleeping and retrying, and starve past the busy timeout at 8).
async fn emit_each(fabric: &Fabric, events: usize, per_unit: usize) {
    let mut emitters = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicUsize::new(0));
    let sqlite = fabric
        .connection(orders::SCHEMA)
        .expect("orders")
        .get_database_backend()
        == DbBackend::Sqlite;
    for _ in 0..if sqlite { 1 } else { 8 } {
        let (fabric, next) = (fabric.clone(), Arc::clone(&next));
        emitters.spawn(async move {
            loop {
                let first = next.fetch_add(per_unit, Ordering::Relaxed);
                if first >= events {
                    break;
                }
                let n = per_unit.min(events - first);
                fabric
                    .unit_of_work("emit_each")
                    .run(async |uow: &mut UnitOfWork<UnitOfWorkError>| {
                        for _ in 0..n {
                            uow.emit(orders::SCHEMA, NOOP, Uuid::now_v7().to_string(), &0)?;
                        }
                        Ok(())
                    })
                    .await
                    .expect("emit");
            }
        });
    }
    while emitters.join_next().await.is_some() {}
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

async fn pending(fabric: &Fabric) -> i64 {
    let db = fabric.connection(orders::SCHEMA).expect("orders");
    scalar(
        db,
        "SELECT COUNT(*) AS n FROM outbox.messages WHERE status = 'pending'",
    )
    .await
}

/// Counts its deliveries.
struct Noop(Arc<AtomicUsize>);

impl Handler<u64> for Noop {
    async fn handle(
        &self,
        _event: u64,
        _envelope: &Envelope,
        _uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The work a drain measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Each event its own unit of work and key; the subscriber does nothing.
    Noop,
    /// The same, emitted 100 to a unit of work (still each with its own key): the
    /// backlog curve, whose larger backlogs take long to emit one by one.
    NoopBatched,
    /// `OrderPlaced` in units of work of 100; the audit subscriber records each.
    Audit,
}

/// Whether the planner has statistics of the outbox's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statistics {
    /// Whatever autovacuum has gathered by the time the drain starts.
    Autovacuum,
    /// `ANALYZE` after the backlog is written.
    Analyzed,
    /// Autovacuum off for the outbox's tables, never analyzed.
    None,
}

/// A database with a backlog of `events` of `work`; a subscriber is registered on the
/// fabric, counting into the returned counter for `Work::Noop`.
async fn backlog(
    engine: Engine,
    work: Work,
    events: usize,
    statistics: Statistics,
) -> Option<(TestDatabase, Arc<AtomicUsize>)> {
    let db = TestDatabase::create(engine, migrations::all()).await?;
    let fabric = db.fabric();
    let handled = Arc::new(AtomicUsize::new(0));
    let outbox = fabric.connection(orders::SCHEMA).expect("orders").clone();
    if statistics == Statistics::None && engine == Engine::Postgres {
        outbox
            .execute_unprepared(
                "ALTER TABLE outbox.messages SET (autovacuum_enabled = false); \
                 ALTER TABLE outbox.heads SET (autovacuum_enabled = false)",
            )
            .await
            .expect("autovacuum off");
    }
    match work {
        Work::Noop | Work::NoopBatched => {
            fabric
                .events()
                .subscribe(NOOP, "noop", Noop(Arc::clone(&handled)))
                .expect("subscribe");
            let per_unit = if work == Work::Noop { 1 } else { 100 };
            emit_each(fabric, events, per_unit).await;
        }
        Work::Audit => {
            // The audit subscriber only (the mail subscriber of `OrderPlaced` would
            // double the messages).
            fabric
                .events()
                .subscribe(
                    ORDER_PLACED,
                    workflows::AuditOrderPlaced::NAME,
                    workflows::AuditOrderPlaced,
                )
                .expect("subscribe");
            emit_orders(fabric, events).await;
        }
    }
    if statistics == Statistics::Analyzed && engine == Engine::Postgres {
        outbox
            .execute_unprepared("ANALYZE outbox.messages; ANALYZE outbox.heads")
            .await
            .expect("analyze");
    }
    Some((db, handled))
}

fn dispatcher(fabric: &Fabric, options: DispatcherOptions) -> RunningHost {
    let mut host = Host::new(fabric.databases());
    host.add(Dispatcher::new(fabric.events(), options), Policy::StopHost)
        .expect("add");
    host.start()
}

/// Events per second for the outbox dispatcher to drain `events` of `work`.
async fn switchyard(
    engine: Engine,
    work: Work,
    concurrency: usize,
    events: usize,
    statistics: Statistics,
) -> Option<f64> {
    let (db, handled) = backlog(engine, work, events, statistics).await?;
    let fabric = db.fabric();
    let options = DispatcherOptions {
        concurrency,
        handler_timeout: Duration::from_secs(2),
        ..DispatcherOptions::default()
    };
    let started = Instant::now();
    let running = dispatcher(fabric, options);
    match work {
        Work::Noop | Work::NoopBatched => {
            while handled.load(Ordering::Relaxed) < events {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // The last deliveries are marked done.
            while pending(fabric).await > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Work::Audit => {
            while audited(fabric).await < events as i64 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    let elapsed = started.elapsed();
    running.shutdown().await;
    Some(events as f64 / elapsed.as_secs_f64())
}

/// Events per second for the hand-written queue to drain `events` of `work`.
async fn hand_written(
    engine: Engine,
    work: Work,
    concurrency: usize,
    events: usize,
) -> Option<f64> {
    let (db, _) = backlog(engine, work, events, Statistics::Autovacuum).await?;
    let fabric = db.fabric();
    let connection = fabric.connection(orders::SCHEMA).expect("orders").clone();
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let connection = connection.clone();
        loops.spawn(async move {
            drain_by_hand(&connection, work)
                .await
                .expect("hand-written queue")
        });
    }
    while loops.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    if work == Work::Audit {
        assert_eq!(audited(fabric).await, events as i64);
    }
    assert_eq!(pending(fabric).await, 0);
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
async fn drain_by_hand(
    db: &DatabaseConnection,
    work: Work,
) -> Result<(), Box<dyn std::error::Error>> {
    let backend = db.get_database_backend();
    let claim = match backend {
        DbBackend::Postgres => {
            "SELECT id, payload FROM outbox.messages WHERE status = 'pending' AND claimed_by IS NULL \
             ORDER BY id LIMIT 16 FOR UPDATE SKIP LOCKED"
        }
        _ => {
            "SELECT id, payload FROM outbox.messages WHERE status = 'pending' AND claimed_by IS NULL \
             ORDER BY id LIMIT 16"
        }
    };
    let done = "UPDATE outbox.messages SET status = 'done' WHERE id = $1";
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
            let tx = db.begin_with_options(immediate()).await?;
            if work == Work::Audit {
                let placed: OrderPlaced = serde_json::from_str(&payload)?;
                let entry = audit::NewEntry {
                    actor: audit::Actor::parse(&format!("customer:{}", placed.customer_id))?,
                    action: audit::Action::parse("order.placed")?,
                    subject: audit::Subject::parse(&format!("order:{}", placed.order_id))?,
                    occurred_at: placed.placed_at,
                    data: serde_json::json!({ "total_minor": placed.total_minor, "lines": placed.lines }),
                };
                audit::record(&tx, &entry).await?;
            }
            tx.execute_raw(Statement::from_sql_and_values(backend, done, [id.into()]))
                .await?;
            tx.commit().await?;
        }
    }
}

const PROBE: EventType<u64> = EventType::new("bench.probe");

/// Tells the benchmark when each event's handler started.
struct Probe(mpsc::UnboundedSender<(u64, Instant)>);

impl Handler<u64> for Probe {
    async fn handle(
        &self,
        event: u64,
        _envelope: &Envelope,
        _uow: &mut UnitOfWork<HandlerError>,
    ) -> Result<(), HandlerError> {
        let _ = self.0.send((event, Instant::now()));
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Wake {
    /// Emitted by another instance; the dispatcher listens.
    Notify,
    /// Emitted by the dispatcher's own process.
    InProcess,
}

/// Emit-commit-to-handler latencies of `samples` events emitted at `rate` a second,
/// sorted.
async fn latencies(
    engine: Engine,
    wake: Wake,
    concurrency: usize,
    rate: u32,
    samples: usize,
) -> Option<Vec<Duration>> {
    let db = TestDatabase::create(engine, migrations::all()).await?;
    let dispatching = db.fabric().clone();
    let (sender, mut handled) = mpsc::unbounded_channel();
    dispatching
        .events()
        .subscribe(PROBE, "probe", Probe(sender))
        .expect("subscribe");
    let emitting = match wake {
        Wake::InProcess => dispatching.clone(),
        Wake::Notify => {
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
    let options = DispatcherOptions {
        concurrency,
        listen: matches!(wake, Wake::Notify),
        ..DispatcherOptions::default()
    };
    let running = dispatcher(&dispatching, options);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let committed: Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Arc::default();
    let emitter = {
        let committed = Arc::clone(&committed);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut emits = tokio::task::JoinSet::new();
            for i in 0..samples as u64 {
                ticks.tick().await;
                let (emitting, committed) = (emitting.clone(), Arc::clone(&committed));
                // Each emit on its own, so a slow commit does not hold up the pace.
                emits.spawn(async move {
                    emitting
                        .unit_of_work("probe")
                        .run(async |uow: &mut UnitOfWork<UnitOfWorkError>| {
                            uow.emit(orders::SCHEMA, PROBE, i.to_string(), &i)
                        })
                        .await
                        .expect("emit");
                    committed.lock().expect("lock").insert(i, Instant::now());
                });
            }
            while emits.join_next().await.is_some() {}
        })
    };
    let mut started = HashMap::with_capacity(samples);
    while started.len() < samples {
        let (i, at) = handled.recv().await.expect("handled");
        started.insert(i, at);
    }
    emitter.await.expect("emitter");
    running.shutdown().await;
    let committed = committed.lock().expect("lock");
    let mut measured: Vec<Duration> = started
        .iter()
        .map(|(i, at)| at.saturating_duration_since(committed[i]))
        .collect();
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
    let events: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let samples: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let curve: Vec<usize> = args
        .next()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    for (work, label) in [
        (
            Work::Noop,
            "each in its own unit of work and key, no-op subscriber",
        ),
        (
            Work::Audit,
            "OrderPlaced in units of work of 100, audit subscriber",
        ),
    ] {
        println!("P2 drain: a backlog of events, {label}");
        println!();
        println!(
            "| backend | backlog | concurrency | hand-written events/s | switchyard events/s | switchyard / hand-written |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for engine in [Engine::Sqlite, Engine::Postgres] {
            // SQLite drains a few hundred a second (a commit each): a tenth of the backlog.
            let events = if engine == Engine::Sqlite {
                events / 10
            } else {
                events
            };
            for concurrency in [1, 16] {
                let Some(hand) = hand_written(engine, work, concurrency, events).await else {
                    continue;
                };
                let Some(ours) =
                    switchyard(engine, work, concurrency, events, Statistics::Autovacuum).await
                else {
                    continue;
                };
                println!(
                    "| {engine:?} | {events} | {concurrency} | {hand:.0} | {ours:.0} | {:.2} |",
                    ours / hand
                );
            }
        }
        println!();
    }
    println!("P2 backlog curve: PostgreSQL, no-op subscriber, concurrency 16, switchyard events/s");
    println!();
    println!("| backlog | analyzed | no statistics (autovacuum off) |");
    println!("|---:|---:|---:|");
    for &backlog in &curve {
        let analyzed = switchyard(
            Engine::Postgres,
            Work::NoopBatched,
            16,
            backlog,
            Statistics::Analyzed,
        )
        .await;
        let none = switchyard(
            Engine::Postgres,
            Work::NoopBatched,
            16,
            backlog,
            Statistics::None,
        )
        .await;
        if let (Some(analyzed), Some(none)) = (analyzed, none) {
            println!("| {backlog} | {analyzed:.0} | {none:.0} |");
        }
    }
    println!();
    println!(
        "P2 pickup latency: {samples} events at 200/s, commit of the emitting unit of work to the handler's start"
    );
    println!();
    println!("| backend | emitted by | concurrency | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|---:|");
    for (engine, wake) in [
        (Engine::Sqlite, Wake::InProcess),
        (Engine::Postgres, Wake::Notify),
        (Engine::Postgres, Wake::InProcess),
    ] {
        for concurrency in [1, 16] {
            let Some(sorted) = latencies(engine, wake, concurrency, 200, samples).await else {
                continue;
            };
            let label = match wake {
                Wake::Notify => "another instance (LISTEN/NOTIFY)",
                Wake::InProcess => "the same instance",
            };
            println!(
                "| {engine:?} | {label} | {concurrency} | {:.2?} | {:.2?} | {:.2?} |",
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.99),
                sorted[sorted.len() - 1],
            );
        }
    }
}
